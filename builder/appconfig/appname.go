package appconfig

import (
	"strconv"
	"strings"
)

// checkAppName makes sure app.ini belongs to the app that was pushed to:
// pushing one app's repository to another's remote would replace it.
func (c *checker) checkAppName() string {
	value, line, ok := c.required(keyAppName, keyAppName+" = "+c.appName)
	if !ok {
		return ""
	}
	if value != c.appName {
		shown := value
		if q := strconv.QuoteToASCII(value); q != `"`+value+`"` || strings.ContainsAny(value, " \t") {
			// A look-alike of the app's name, or control characters: quoted,
			// so that the difference shows.
			shown = q
		}
		c.errorf(line, keyAppName, "app_name = %s but you pushed to %s; set app_name = %s or push to the %s remote",
			shown, c.appName, c.appName, shown)
		return ""
	}
	return value
}
