// Package names is the one place that says what may name an app, a branch
// that deploys, an instance, a node, a host and a Debian package. Each of
// these becomes a directory, a Unix user, a host name label or part of a
// command line somewhere, so every check is an allow-list, and every
// package that accepts such a name from outside asks this one.
package names

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	app = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// deployableBranch: git allows far more ('$', ';', '`', '|', quotes,
	// braces, any Unicode, look-alikes of "main" included), but a branch
	// name becomes an instance directory on the nodes, a host name label
	// and part of every line about it.
	deployableBranch = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	branchGlob       = regexp.MustCompile(`^[A-Za-z0-9*?][A-Za-z0-9._/*?-]{0,199}$`)
	instance         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._%-]{0,199}$`)
	host             = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	debianPackage    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// MaxInstance is the longest instance name: an instance is a directory on
// every node.
const MaxInstance = 200

// IsApp reports whether s may name an app: 1-63 lowercase letters, digits
// and '-', starting with a letter (nodes use the same rule for their names).
func IsApp(s string) bool { return app.MatchString(s) }

// IsNode reports whether s may name a node; the rule is the app's.
func IsNode(s string) bool { return app.MatchString(s) }

// CheckBranch refuses a branch that cannot be deployed, with a sentence
// that says why and what to do.
func CheckBranch(branch string) error {
	if !deployableBranch.MatchString(branch) {
		return fmt.Errorf("branch %s cannot be deployed: a branch name becomes a directory and a host name on the nodes, so it may hold only ASCII letters, digits, '.', '_', '-' and '/', starting with a letter or digit; push it under another name", Show(branch))
	}
	// git's own rules (git check-ref-format) for these characters. git
	// checks them only after pre-receive, when the deploy is already live.
	if strings.Contains(branch, "..") || strings.HasSuffix(branch, ".") || strings.HasSuffix(branch, "/") ||
		slices.ContainsFunc(strings.Split(branch, "/"), func(c string) bool {
			return c == "" || strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock")
		}) {
		return fmt.Errorf("branch %s is not a valid git branch name (no \"..\", \"//\", component starting with '.' or ending with \".lock\", and no '.' or '/' at the end); push it under another name", Show(branch))
	}
	if n := len(Instance(branch)); n > MaxInstance {
		return fmt.Errorf("branch %s is too long to deploy: it is %d characters and its instance name would be %d, more than %d (each '/' counts 3); push it under a shorter name", Show(branch), len(branch), n, MaxInstance)
	}
	return nil
}

// Instance is the instance a branch deploys to: main and master are
// production, any other branch its own instance.
func Instance(branch string) string {
	if branch == "main" || branch == "master" {
		return "production"
	}
	return "branch-" + url.PathEscape(branch)
}

// IsInstance reports whether s may name an instance directory.
func IsInstance(s string) bool { return instance.MatchString(s) }

// IsBranchGlob reports whether g is a branch name or glob (* and ?) as
// app.ini's [staging] branches and the receiver's staging settings take.
func IsBranchGlob(g string) bool { return branchGlob.MatchString(g) }

// IsHost reports whether s is a lowercase DNS name (labels of 1-63
// letters, digits and inner '-', 253 characters at most).
func IsHost(s string) bool { return len(s) <= 253 && host.MatchString(s) }

// IsDebianPackage reports whether s is a package name as Debian policy
// allows it (§5.6.7).
func IsDebianPackage(s string) bool { return debianPackage.MatchString(s) }

// Show quotes a name a client sent for an error message: escaped to ASCII,
// so a Cyrillic 'а' shows as \u0430 instead of passing for an 'a', and cut
// short when it is long.
func Show(s string) string {
	if max := 60; len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		return strconv.QuoteToASCII(s[:max]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// IsEnvName reports whether s may name an environment variable a deployer
// sets (`run --env`): a shell-style identifier, 128 characters at most.
func IsEnvName(s string) bool { return envName.MatchString(s) }

// CheckEnvAssignment checks one NAME=VALUE a deployer passes; the error
// names the variable, never its value.
func CheckEnvAssignment(kv string) error {
	name, value, ok := strings.Cut(kv, "=")
	switch {
	case !ok:
		return fmt.Errorf("--env %s has no '='; write --env NAME=VALUE", Show(name))
	case !IsEnvName(name):
		return fmt.Errorf("--env %s: not a variable name; use letters, digits and '_', not starting with a digit", Show(name))
	case strings.ContainsRune(value, 0):
		return fmt.Errorf("--env %s: the value holds a NUL byte", name)
	}
	return nil
}

var process = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,29}$`)

// IsProcess reports whether s may name a background process (worker.NAME,
// cron.NAME, a Procfile entry): it becomes part of file names and log
// lines on the nodes.
func IsProcess(s string) bool { return process.MatchString(s) }

var acmeToken = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// IsACMEToken reports whether s may be an ACME HTTP-01 token (RFC 8555
// §8.3: base64url, at least 128 bits): it becomes a file name in the
// nodes' challenge webroot.
func IsACMEToken(s string) bool { return acmeToken.MatchString(s) }
