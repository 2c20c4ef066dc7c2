package appconfig

// checkPHPRoot reads php_root, the directory a php app's files are served
// from; "" stands for the app root.
func (c *checker) checkPHPRoot(platform Platform) string {
	value, line, ok := c.oneLine(keyPHPRoot)
	if !ok {
		return ""
	}
	if platform == PlatformPython {
		c.warnf(line, keyPHPRoot, "php_root is ignored because platform is python; remove it, or set platform = php")
		return ""
	}
	dir, err := cleanTreePath(value)
	if err != nil {
		c.errorf(line, keyPHPRoot, "%q %v; %s", value, err, pathFix)
		return ""
	}
	if dir != "" && !c.tree.IsDir(dir) {
		problem := "does not exist in the pushed tree"
		if c.tree.IsFile(dir) {
			problem = "is a file, not a directory"
		}
		c.errorf(line, keyPHPRoot, "%s %s; set php_root to the directory holding the app's PHP files, or . for the app root", dir, problem)
		return ""
	}
	return dir
}
