package appconfig

import (
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"
)

// lineIndex knows on which lines app.ini's sections and keys are. ini.v1
// keeps no line numbers, so the raw text is scanned a second time, following
// the parser's rules closely enough that the two agree on every file the
// parser accepts, and pointing at the first line it would reject.
type lineIndex struct {
	sections map[string]*sectionLines
	bad      badLine

	// What is past the limits below, 0 when nothing is.
	overSections int // line of the first section header past maxSections
	overKeys     int // line of the first key past maxKeys
	longValue    int // line of the first key whose value has more than maxValueLines lines
	longValueKey string
}

// Limits on the shape of app.ini. The ini parser's work grows with the
// square of the number of sections, of keys, and of a value's lines, so
// a 1 MiB file of nothing but keys would take it minutes. Real files are
// far inside these.
const (
	maxSections   = 100
	maxKeys       = 1000
	maxValueLines = 500
)

// sectionLines is where one section's header and keys are.
type sectionLines struct {
	header int              // first [name] line; 0 for ini.DefaultSection
	keys   map[string][]int // every line that sets the key, in order
}

// badLine is the first line the ini parser cannot read, 0 when none.
type badLine struct {
	line int
	// afterBlank is set when the line is indented and follows a blank line:
	// a blank line ends a multi-line value, so the parser reads what was
	// meant as a continuation as a key without "=".
	afterBlank bool
}

// keyDelimiters are ini.v1's default key-value delimiters.
const keyDelimiters = "=:"

// indexLines scans data the way the ini parser does with loadOptions.
func indexLines(data []byte) lineIndex {
	ix := lineIndex{sections: map[string]*sectionLines{}}
	s := lineScanner{ix: &ix, section: ix.section(ini.DefaultSection, 0), autoKeys: 1}
	text := strings.TrimPrefix(string(data), "\ufeff") // the parser drops a UTF-8 BOM
	for i, raw := range strings.SplitAfter(text, "\n") {
		s.scan(i+1, raw)
	}
	if s.openQuote != "" {
		ix.markBad(s.valueKeyLine, false) // the parser fails at the end of the file
	}
	return ix
}

// lineScanner is indexLines' state between lines.
type lineScanner struct {
	ix       *lineIndex
	section  *sectionLines
	autoKeys int // the parser names "-" keys #1, #2, ... per section

	// What the lines above leave open: a value going on to indented lines,
	// or a quoted value waiting for its closing quote.
	continuing bool
	openQuote  string

	prevBlank              bool
	sectionCount, keyCount int
	valueKey               string // the key whose value is being read
	valueKeyLine           int
	valueLines             int
}

// scan reads one line, raw with its "\n", numbered n.
func (s *lineScanner) scan(n int, raw string) {
	afterBlank := s.prevBlank
	s.prevBlank = strings.TrimSpace(raw) == ""
	indented := raw != "" && strings.ContainsRune(" \t\f", rune(raw[0]))
	if s.inValue(raw, indented) {
		return
	}
	line := strings.TrimLeftFunc(raw, unicode.IsSpace)
	switch {
	case line == "" || line[0] == '#' || line[0] == ';':
	case line[0] == '[':
		s.header(n, line)
	default:
		s.key(n, line, indented && afterBlank)
	}
}

// inValue consumes raw when it belongs to the value of the key above.
func (s *lineScanner) inValue(raw string, indented bool) bool {
	switch {
	case s.openQuote != "":
		if strings.Contains(raw, s.openQuote) {
			s.openQuote = ""
		}
	case s.continuing && indented:
	default:
		s.continuing = false
		return false
	}
	if s.valueLines++; s.valueLines > maxValueLines && s.ix.longValue == 0 {
		s.ix.longValue, s.ix.longValueKey = s.valueKeyLine, s.valueKey
	}
	return true
}

// header reads a left-trimmed "[name]" line.
func (s *lineScanner) header(n int, line string) {
	end := strings.LastIndexByte(line, ']')
	if end <= 1 { // unclosed, or "[]"
		s.ix.markBad(n, false)
		return
	}
	s.section = s.ix.section(line[1:end], n)
	s.autoKeys = 1
	if s.sectionCount++; s.sectionCount > maxSections && s.ix.overSections == 0 {
		s.ix.overSections = n
	}
}

// key reads a left-trimmed "key = value" line.
func (s *lineScanner) key(n int, line string, afterBlank bool) {
	key, valueStart, ok := keyName(line)
	if !ok {
		s.ix.markBad(n, afterBlank)
		return
	}
	if key == "-" {
		key = "#" + strconv.Itoa(s.autoKeys)
		s.autoKeys++
	}
	s.section.keys[key] = append(s.section.keys[key], n)
	if s.keyCount++; s.keyCount > maxKeys && s.ix.overKeys == 0 {
		s.ix.overKeys = n
	}
	s.continuing, s.openQuote = valueContinues(line[valueStart:])
	s.valueKey, s.valueKeyLine, s.valueLines = key, n, 1
}

// section returns the lines of the named section, recording its header.
func (ix *lineIndex) section(name string, header int) *sectionLines {
	s, ok := ix.sections[name]
	if !ok {
		s = &sectionLines{header: header, keys: map[string][]int{}}
		ix.sections[name] = s
	}
	if s.header == 0 {
		s.header = header
	}
	return s
}

func (ix *lineIndex) markBad(line int, afterBlank bool) {
	if ix.bad.line == 0 {
		ix.bad = badLine{line: line, afterBlank: afterBlank}
	}
}

// headerLine is the line of section's first header, 0 when unknown.
func (ix *lineIndex) headerLine(section string) int {
	if s, ok := ix.sections[section]; ok {
		return s.header
	}
	return 0
}

// keyLines are the lines that set key in section.
func (ix *lineIndex) keyLines(section, key string) []int {
	if s, ok := ix.sections[section]; ok {
		return s.keys[key]
	}
	return nil
}

// keyLine is the line whose value the parser keeps (the last), 0 when unknown.
func (ix *lineIndex) keyLine(section, key string) int {
	lines := ix.keyLines(section, key)
	if len(lines) == 0 {
		return 0
	}
	return lines[len(lines)-1]
}

// keyName reads the key at the start of a left-trimmed line as ini.v1 does,
// quoted key names included, and says where the value starts.
func keyName(line string) (key string, valueStart int, ok bool) {
	quote := ""
	switch {
	case strings.HasPrefix(line, `"""`) && len(line) > 6:
		quote = `"""`
	case line[0] == '"':
		quote = `"`
	case line[0] == '`':
		quote = "`"
	}
	if quote == "" {
		end := strings.IndexAny(line, keyDelimiters)
		if end <= 0 {
			return "", 0, false
		}
		key = strings.TrimSpace(line[:end])
		return key, end + 1, key != ""
	}
	start := len(quote)
	closing := strings.Index(line[start:], quote)
	if closing < 0 {
		return "", 0, false
	}
	closing += start
	// The parser looks for the delimiter from closing+len(quote); mirror it.
	delim := strings.IndexAny(line[closing+start:], keyDelimiters)
	if delim < 0 {
		return "", 0, false
	}
	key = strings.TrimSpace(line[start:closing])
	return key, closing + delim + start + 1, key != ""
}

// valueContinues says whether a key's value, as written after the
// delimiter, goes on to indented lines below, or opens a quoted value that
// goes on until its closing quote.
func valueContinues(afterDelimiter string) (indentedLines bool, openQuote string) {
	v := strings.TrimLeftFunc(afterDelimiter, unicode.IsSpace)
	if v == "" {
		return strings.HasSuffix(afterDelimiter, "\n"), ""
	}
	quote := ""
	switch {
	case len(v) > 3 && strings.HasPrefix(v, `"""`):
		quote = `"""`
	case v[0] == '`':
		quote = "`"
	}
	if quote != "" {
		if !strings.Contains(v[len(quote):], quote) {
			return false, quote
		}
		return false, ""
	}
	t := strings.TrimSpace(v)
	if surroundedBy(t, '\'') || surroundedBy(t, '"') {
		return false, "" // the parser strips the quotes and stops there
	}
	return strings.HasSuffix(v, "\n"), ""
}

// surroundedBy mirrors the parser's test for a value wholly in quotes.
func surroundedBy(s string, quote byte) bool {
	return len(s) >= 2 && s[0] == quote && s[len(s)-1] == quote &&
		strings.IndexByte(s[1:], quote) == len(s)-2
}
