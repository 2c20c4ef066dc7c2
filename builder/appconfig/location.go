package appconfig

import (
	"fmt"
	"strings"
)

// checkDefaultLocation reads default_location, HOST[/PATH]: where the app
// is served unless the deployer says otherwise.
func (c *checker) checkDefaultLocation() *Location {
	value, line, ok := c.oneLine(keyDefaultLocation)
	if !ok {
		return nil
	}
	loc, problem := parseLocation(value)
	if problem != "" {
		c.errorf(line, keyDefaultLocation, "%q %s", value, problem)
		return nil
	}
	return &loc
}

// locationFix is the advice after most problems with default_location.
const locationFix = "write HOST or HOST/PATH, e.g. blog.example.com or example.com/blog"

// parseLocation splits HOST[/PATH], lowercasing the host and dropping a
// trailing slash from the path. The problem it returns starts with a verb,
// to follow the quoted value.
func parseLocation(value string) (Location, string) {
	if scheme, _, found := strings.Cut(value, "://"); found && !strings.Contains(scheme, "/") {
		return Location{}, fmt.Sprintf("starts with %s://; drop it and %s (the receiver decides how the app is served)", scheme, locationFix)
	}
	host, path, _ := strings.Cut(value, "/")
	if strings.Contains(host, ":") {
		return Location{}, "has a port; remove the :PORT part, since ports are the receiver's business"
	}
	host = strings.ToLower(host)
	if problem := hostnameProblem(host); problem != "" {
		return Location{}, problem + "; " + locationFix
	}
	path = strings.TrimRight(path, "/")
	if path == "" {
		return Location{Host: host}, ""
	}
	for segment := range strings.SplitSeq(path, "/") {
		if problem := pathSegmentProblem(segment); problem != "" {
			return Location{}, problem + "; " + locationFix
		}
	}
	return Location{Host: host, Path: "/" + path}, ""
}

// hostnameProblem says why a lowercase host is not a DNS host name, or "".
func hostnameProblem(host string) string {
	switch {
	case host == "":
		return "has no host name"
	case strings.Contains(host, "*"):
		return "has a wildcard (*), but one default location names one host"
	case len(host) > 253:
		return "has a host name longer than 253 characters"
	}
	labels := strings.Split(host, ".")
	for _, label := range labels {
		if problem := hostLabelProblem(label); problem != "" {
			return problem
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "has an IP address or a numeric top-level label, not a host name"
	}
	return ""
}

// hostLabelProblem says why label cannot be one dot-separated part of a
// host name, or "".
func hostLabelProblem(label string) string {
	switch {
	case label == "":
		return "has an empty label in its host name (a leading, trailing or doubled dot)"
	case len(label) > 63:
		return fmt.Sprintf("has a host name label longer than 63 characters (%.20s...)", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Sprintf("has a host name label %q that starts or ends with -", label)
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') && r != '-' {
			return fmt.Sprintf("has %q in its host name, where only letters, digits, - and . may be", r)
		}
	}
	return ""
}

// pathSegmentProblem says why segment cannot be part of the location's
// path, or "".
func pathSegmentProblem(segment string) string {
	switch segment {
	case "":
		return "has an empty path segment (//)"
	case ".", "..":
		return fmt.Sprintf("has a %s path segment", segment)
	}
	for _, r := range segment {
		ok := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || strings.ContainsRune("._~-", r)
		if !ok {
			return fmt.Sprintf("has %q in its path, where only letters, digits and . _ ~ - may be", r)
		}
	}
	return ""
}
