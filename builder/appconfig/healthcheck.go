package appconfig

// defaultHealthCheck is requested when app.ini names no health check: an
// app that serves its front page is taken to be up.
const defaultHealthCheck = "/"

// checkHealthCheck reads health_check, the path requested to see whether a
// new release is up.
func (c *checker) checkHealthCheck() string {
	value, line, ok := c.oneLine(keyHealthCheck)
	if !ok {
		return defaultHealthCheck
	}
	if problem := urlPathProblem(value); problem != "" {
		c.errorf(line, keyHealthCheck, "%q %s; set a path on the app such as /health, or remove health_check to use /", value, problem)
		return defaultHealthCheck
	}
	return value
}
