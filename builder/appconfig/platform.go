package appconfig

import "strings"

// checkPlatform returns the platform app.ini asks for, python when unset,
// or "" when it asks for one there is none of (which is reported).
func (c *checker) checkPlatform() Platform {
	value, line, ok := c.oneLine(keyPlatform)
	if !ok {
		return PlatformPython
	}
	switch p := Platform(strings.ToLower(value)); p {
	case PlatformPython, PlatformPHP:
		return p
	}
	c.errorf(line, keyPlatform, "%q is not a platform this host runs; set platform = python or platform = php", value)
	return ""
}
