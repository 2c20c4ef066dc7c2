package appconfig

// checkAppName makes sure app.ini belongs to the app that was pushed to:
// pushing one app's repository to another's remote would replace it.
func (c *checker) checkAppName() string {
	value, line, ok := c.required(keyAppName, keyAppName+" = "+c.appName)
	if !ok {
		return ""
	}
	if value != c.appName {
		c.errorf(line, keyAppName, "app_name = %s but you pushed to %s; set app_name = %s or push to the %s remote",
			value, c.appName, c.appName, value)
		return ""
	}
	return value
}
