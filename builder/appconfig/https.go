package appconfig

import "slices"

// keyHTTPS is https = required | optional | off (issue 19): whether the
// app's hosts are served over HTTPS once the receiver holds a certificate
// for them, and whether plain HTTP then only redirects.
const keyHTTPS = "https"

// The values of https. Unset is HTTPSOptional.
const (
	HTTPSRequired = "required"
	HTTPSOptional = "optional"
	HTTPSOff      = "off"
)

var httpsValues = []string{HTTPSRequired, HTTPSOptional, HTTPSOff}

// checkHTTPS reads https; "" when unset.
func (c *checker) checkHTTPS() string {
	value, line, ok := c.oneLine(keyHTTPS)
	if !ok {
		return ""
	}
	if slices.Contains(httpsValues, value) {
		return value
	}
	hint := ""
	if suggestion := closest(value, httpsValues); suggestion != "" {
		hint = "did you mean " + suggestion + "? "
	}
	c.errorf(line, keyHTTPS, "%q is not a value of https; %swrite required (HTTP redirects to HTTPS), optional (both; the default) or off (HTTP only)", value, hint)
	return ""
}
