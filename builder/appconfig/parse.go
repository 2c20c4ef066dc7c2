package appconfig

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/ini.v1"
)

// productionSection is the only section Parse reads.
const productionSection = "production"

// loadOptions make ini.v1 read app.ini as Silver Lining's Python
// ConfigParser did.
var loadOptions = ini.LoadOptions{
	// An indented line continues the value above it; update_fetch and
	// packages list one item per line this way.
	AllowPythonMultilineValues: true,
	// "#" is part of values such as runner = wsgi.py#app; ConfigParser only
	// treats whole lines starting with # or ; as comments.
	IgnoreInlineComment: true,
	// ConfigParser has no backslash continuation: a trailing \ is literal.
	IgnoreContinuation: true,
}

// Parse reads data, the content of app.ini, and checks it against appName
// (the app the push went to) and tree (what was pushed). fileName is what
// messages call the file, e.g. "app.ini" or "app.ini -> src/app/silver-app.ini".
//
// It returns every warning, and when anything is wrong a nil Config and an
// Errors holding every problem found. A file too large or too oddly shaped
// to read (see MaxFileSize), or one the ini parser rejects, yields a single
// error and nothing is checked beyond it.
func Parse(fileName string, data []byte, appName string, tree Tree) (*Config, []Warning, error) {
	if fileName == "" {
		fileName = "app.ini"
	}
	c := &checker{file: fileName, appName: appName, tree: tree}
	if len(data) > MaxFileSize {
		c.errorf(0, "", "is %d bytes, over the 1 MiB limit; keep only settings in %s", len(data), fileName)
		return c.result(nil)
	}
	if line, problem := textProblem(data); problem != "" {
		c.errorf(line, "", "%s", problem)
		return c.result(nil)
	}

	c.lines = indexLines(data)
	if c.overLimits() {
		return c.result(nil)
	}
	file, err := load(data)
	if err != nil {
		c.syntaxError(err)
		return c.result(nil)
	}
	c.warnOutsideProduction(file)
	section, err := file.GetSection(productionSection)
	if err != nil {
		c.missingProduction(file)
		return c.result(nil)
	}
	c.settings = settingsOf(section, &c.lines)
	cfg := c.check()
	c.checkStaging(file, cfg)
	return c.result(cfg)
}

// load runs the ini parser. It turns a panic in the parser into an error:
// data comes from whoever can push, and must not take the receiver down.
func load(data []byte) (file *ini.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			file, err = nil, fmt.Errorf("ini parser failed: %v", r)
		}
	}()
	opts := loadOptions
	// The parser only looks this far ahead for the indented lines of a
	// value; a shorter window would cut a long value and read its rest as
	// keys.
	opts.ReaderBufferSize = len(data)
	return ini.LoadSources(opts, data)
}

// overLimits reports a file too big in shape for the ini parser to read
// quickly; see maxKeys.
func (c *checker) overLimits() bool {
	ix := &c.lines
	switch {
	case ix.overSections > 0:
		c.errorf(ix.overSections, "", "has more than %d sections; only [production] is read, so delete the others", maxSections)
	case ix.overKeys > 0:
		c.errorf(ix.overKeys, "", "has more than %d keys; keep only the app's settings in %s", maxKeys, c.file)
	case ix.longValue > 0:
		c.errorf(ix.longValue, ix.longValueKey, "the value has more than %d lines; shorten it, or move the data into a file in the app", maxValueLines)
	default:
		return false
	}
	return true
}

func (c *checker) syntaxError(err error) {
	reason := strings.TrimSpace(err.Error())
	fix := "write each setting as key = value, indent only the continuation lines of a value, and start comment lines with #"
	if c.lines.bad.afterBlank {
		fix = "a blank line ends a multi-line value, so remove the blank line above this one"
	}
	c.errs = append(c.errs, &Error{
		File:    c.file,
		Line:    c.lines.bad.line,
		Message: fmt.Sprintf("cannot parse (%s); %s", reason, fix),
		Err:     err,
	})
}

// warnOutsideProduction warns about keys before the first section (ini's
// default section), which Silver Lining never read.
func (c *checker) warnOutsideProduction(file *ini.File) {
	section, err := file.GetSection(ini.DefaultSection)
	if err != nil {
		return
	}
	header := c.lines.headerLine(ini.DefaultSection)
	for _, key := range section.Keys() {
		line := c.lines.keyLine(ini.DefaultSection, key.Name())
		where := "outside any section"
		if header > 0 && line > header {
			where = "in [" + ini.DefaultSection + "]"
		}
		c.warnf(line, key.Name(), "%s is %s and is ignored; move it below the [production] line", key.Name(), where)
	}
}

func (c *checker) missingProduction(file *ini.File) {
	for _, name := range file.SectionStrings() {
		if name == ini.DefaultSection {
			continue
		}
		if distance(strings.ToLower(strings.TrimSpace(name)), productionSection) <= maxSuggestDistance {
			c.errorf(c.lines.headerLine(name), "",
				"found [%s] but no [production] section; rename it to [production] (section names are case-sensitive)", name)
			return
		}
	}
	c.errorf(0, "", "has no [production] section; add a line [production] above the keys")
}

// settingsOf collects a section's keys with the lines that set them.
func settingsOf(section *ini.Section, lines *lineIndex) []setting {
	keys := section.Keys()
	settings := make([]setting, 0, len(keys))
	for _, key := range keys {
		settings = append(settings, setting{
			key:   key.Name(),
			value: key.Value(),
			lines: lines.keyLines(productionSection, key.Name()),
		})
	}
	return settings
}

// result sorts what was found by line and returns it the way Parse does.
func (c *checker) result(cfg *Config) (*Config, []Warning, error) {
	slices.SortStableFunc(c.warnings, func(a, b Warning) int { return a.Line - b.Line })
	slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
	if len(c.errs) > 0 {
		return nil, c.warnings, c.errs
	}
	return cfg, c.warnings, nil
}
