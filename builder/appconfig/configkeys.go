package appconfig

import (
	"regexp"
	"strings"
)

// configName is what may follow "config.": it becomes a setting name in
// the app's environment, so it sticks to characters every consumer takes.
var configName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// checkConfigKey reads one config.NAME key, returning NAME.
func (c *checker) checkConfigKey(s setting) (string, bool) {
	name := strings.TrimPrefix(s.key, configPrefix)
	if !configName.MatchString(name) {
		c.errorf(s.line(), s.key, "%q cannot be a config name; start it with a letter or _ and use only letters, digits, _ . and -", name)
		return "", false
	}
	return name, true
}
