// Package hooks holds the git hook script installed in every app repository
// and both ends of the conversation between that hook and the daemon: the
// hook-side relay (`gitreceive hook pre-receive`) and the wire messages.
//
// The hook is a thin relay (DESIGN.md decision 3): it forwards the ref updates
// and git's quarantine variables to the daemon over a unix socket, prints what
// the daemon streams back, and exits with the daemon's verdict.
package hooks

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

// Environment variables the daemon sets on `git receive-pack` so that the
// hook it runs can find its way back.
const (
	EnvBin    = "GITRECEIVE_BIN"         // absolute path of the gitreceive binary
	EnvSocket = "GITRECEIVE_HOOK_SOCKET" // the daemon's unix socket
	EnvToken  = "GITRECEIVE_PUSH_TOKEN"  // per-push secret binding the hook to its push
)

// PreReceiveScript is the pre-receive hook installed in every repository.
//
//go:embed pre-receive
var PreReceiveScript []byte

// MaxRequestBytes bounds what the daemon reads from a hook connection.
const MaxRequestBytes = 4 << 20

// MaxUpdates bounds the ref updates in one push; git sends one line per ref.
const MaxUpdates = 1000

// Request is what the hook sends to the daemon: one JSON object.
type Request struct {
	Token   string            `json:"token"`
	Hook    string            `json:"hook"`
	Updates []RefUpdate       `json:"updates"`
	Env     map[string]string `json:"env,omitempty"`
}

// Message is one JSON line the daemon streams back: output for the pusher,
// and last of all the verdict (Exit set).
type Message struct {
	Output string `json:"output,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
}

// RefUpdate is one line of pre-receive input: "<old> <new> <ref>".
type RefUpdate struct {
	Old string `json:"old"`
	New string `json:"new"`
	Ref string `json:"ref"`
}

var objectID = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// ParseRefUpdate parses one line of git's pre-receive input.
func ParseRefUpdate(line string) (RefUpdate, error) {
	f := strings.Split(line, " ")
	if len(f) != 3 {
		return RefUpdate{}, fmt.Errorf("malformed ref update %q: want \"<old> <new> <ref>\"", line)
	}
	u := RefUpdate{Old: f[0], New: f[1], Ref: f[2]}
	return u, u.Validate()
}

// Validate checks the object ids and that the ref is a plain refs/ name.
func (u RefUpdate) Validate() error {
	if !objectID.MatchString(u.Old) || !objectID.MatchString(u.New) {
		return fmt.Errorf("malformed object id in ref update for %q", u.Ref)
	}
	if !strings.HasPrefix(u.Ref, "refs/") || len(u.Ref) > 1024 || strings.ContainsAny(u.Ref, "\x00\n\r ") {
		return fmt.Errorf("malformed ref name %q", u.Ref)
	}
	return nil
}

// IsDelete reports whether the update deletes the ref.
func (u RefUpdate) IsDelete() bool { return strings.Trim(u.New, "0") == "" }

// Branch returns the branch name for refs/heads/ refs, else "".
func (u RefUpdate) Branch() string {
	b, ok := strings.CutPrefix(u.Ref, "refs/heads/")
	if !ok {
		return ""
	}
	return b
}

// Tag returns the tag name for refs/tags/ refs, else "".
func (u RefUpdate) Tag() string {
	t, ok := strings.CutPrefix(u.Ref, "refs/tags/")
	if !ok {
		return ""
	}
	return t
}

// ShortNew is the abbreviated new commit id shown to people.
func (u RefUpdate) ShortNew() string { return u.New[:7] }

// ForwardedEnv reports whether the hook forwards the variable named k: git's
// quarantine variables (the daemon reads the pushed objects through them) and
// push options. Nothing else from the hook's environment reaches the daemon.
func ForwardedEnv(k string) bool {
	switch k {
	case "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH", "GIT_PUSH_OPTION_COUNT":
		return true
	}
	if n, ok := strings.CutPrefix(k, "GIT_PUSH_OPTION_"); ok && n != "" && len(n) <= 4 {
		return strings.Trim(n, "0123456789") == ""
	}
	return false
}
