package appconfig

import (
	"slices"
	"strings"
)

// KnownServices are the NAMEs a service.NAME key may have: what this host
// knows how to provision.
var KnownServices = []string{"postgis", "postgresql", "mysql", "redis", "files", "writable_root"}

// checkService reads one service.NAME key.
func (c *checker) checkService(s setting) (Service, bool) {
	name := strings.TrimPrefix(s.key, servicePrefix)
	if slices.Contains(KnownServices, name) {
		return Service{Name: name, Value: strings.TrimSpace(s.value)}, true
	}
	known := strings.Join(KnownServices, ", ")
	if suggestion := closest(name, KnownServices); suggestion != "" {
		c.errorf(s.line(), s.key, "%q is not a service this host provides; did you mean %s%s (known services: %s)?",
			name, servicePrefix, suggestion, known)
	} else {
		c.errorf(s.line(), s.key, "%q is not a service this host provides; use one of %s", name, known)
	}
	return Service{}, false
}
