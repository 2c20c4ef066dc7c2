package appconfig

import (
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// checkPackages reads packages: Debian packages the app needs installed,
// separated by spaces or written one per line.
func (c *checker) checkPackages() []string {
	s, ok := c.setting(keyPackages)
	if !ok {
		return nil
	}
	var packages []string
	for _, l := range c.valueLines(s) {
		for name := range strings.FieldsSeq(l.text) {
			if !names.IsDebianPackage(name) {
				c.errorf(l.line, keyPackages, "%q is not a Debian package name; use the name apt-get installs, in lowercase letters, digits and + . - (at least 2 characters, without a version)", name)
				continue
			}
			packages = append(packages, name)
		}
	}
	return packages
}
