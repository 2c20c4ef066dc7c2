package appconfig

import (
	"fmt"
	"slices"
	"strings"
)

// checker collects what is wrong with one app.ini while its keys are read,
// so that Parse can report everything at once.
type checker struct {
	file     string
	appName  string
	tree     Tree
	lines    lineIndex
	settings []setting // the [production] keys, in file order
	warnings []Warning
	errs     Errors
}

// setting is one [production] key as the ini parser read it.
type setting struct {
	key   string
	value string // untrimmed; indented continuation lines joined by "\n"
	lines []int  // every line setting the key; the parser keeps the last
}

// line is where the kept value starts, 0 when unknown.
func (s setting) line() int {
	if len(s.lines) == 0 {
		return 0
	}
	return s.lines[len(s.lines)-1]
}

// valueLine is one line of a multi-line value.
type valueLine struct {
	text string // trimmed
	line int    // 0 when unknown
}

func (c *checker) errorf(line int, key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) warnf(line int, key, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{File: c.file, Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) setting(key string) (setting, bool) {
	i := slices.IndexFunc(c.settings, func(s setting) bool { return s.key == key })
	if i < 0 {
		return setting{}, false
	}
	return c.settings[i], true
}

// oneLine returns key's trimmed value when it has a usable one: an absent
// or empty key has none, and neither has a value that spilled onto the
// next, indented, line (which is reported, as it is nearly always a key
// that was indented by mistake).
func (c *checker) oneLine(key string) (value string, line int, ok bool) {
	s, found := c.setting(key)
	if !found {
		return "", 0, false
	}
	lines := c.valueLines(s)
	switch len(lines) {
	case 0:
		return "", s.line(), false
	case 1:
		return lines[0].text, s.line(), true
	}
	c.errorf(s.line(), key, "the value goes on to line %d (%q) because that line is indented; remove the indentation if it is a key of its own, or put the whole value on one line",
		lines[1].line, lines[1].text)
	return "", s.line(), false
}

// required is oneLine for a key app.ini must have; example shows a good
// setting of it.
func (c *checker) required(key, example string) (value string, line int, ok bool) {
	s, found := c.setting(key)
	if !found {
		c.errorf(c.lines.headerLine(productionSection), key, "is missing; add %s under [production]", example)
		return "", 0, false
	}
	if len(c.valueLines(s)) == 0 {
		c.errorf(s.line(), key, "is empty; set it, e.g. %s", example)
		return "", s.line(), false
	}
	return c.oneLine(key)
}

// valueLines splits a multi-line value into its non-blank lines, leaving
// out lines that are comments.
func (c *checker) valueLines(s setting) []valueLine {
	var out []valueLine
	for i, text := range strings.Split(s.value, "\n") {
		text = strings.TrimSpace(text)
		if text == "" || (i > 0 && strings.HasPrefix(text, "#")) {
			continue
		}
		line := 0
		if s.line() > 0 {
			line = s.line() + i
		}
		out = append(out, valueLine{text: text, line: line})
	}
	return out
}

// warnDuplicates warns about keys set more than once: the parser silently
// keeps the last value, which surprises whoever edited the first.
func (c *checker) warnDuplicates() {
	for _, s := range c.settings {
		if len(s.lines) < 2 {
			continue
		}
		earlier := make([]string, len(s.lines)-1)
		for i, n := range s.lines[:len(s.lines)-1] {
			earlier[i] = fmt.Sprint(n)
		}
		where := "line " + earlier[0]
		if len(earlier) > 1 {
			where = "lines " + strings.Join(earlier, ", ")
		}
		c.warnf(s.line(), s.key, "%s is set again here, overriding %s; delete the setting you do not want", s.key, where)
	}
}
