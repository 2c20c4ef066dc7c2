package apps

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"

	"github.com/gitreceive/gitreceive/builder/appconfig"
)

// settingValue is one setting's value and where it was set.
type settingValue struct {
	value  string
	source string // the file's path, "environment GITRECEIVE_KEY" or "--listen"
	line   int    // in the file; 0 when unknown or not from a file
}

// where names the source for a message: "PATH: line 3".
func (v settingValue) where() string {
	if v.line > 0 {
		return v.source + ": line " + strconv.Itoa(v.line)
	}
	return v.source
}

// settingsFile is what gitreceive.ini sets.
type settingsFile struct {
	values   map[string]settingValue // the known keys with a non-empty value
	warnings []string
}

// parseSettingsFile reads gitreceive.ini's text (empty: no file). ini.v1
// reads the values, as it always has; it keeps no line numbers, so
// keyLines finds them in the text for the messages.
func parseSettingsFile(path string, data []byte) (settingsFile, error) {
	out := settingsFile{values: map[string]settingValue{}}
	f, err := loadINI(data)
	if err != nil {
		return out, fmt.Errorf("reading %s: %w", path, err)
	}
	lines := keyLines(data)
	known := settingKeys()
	for _, sec := range f.Sections() {
		if sec.Name() != ini.DefaultSection {
			at := settingValue{source: path, line: lines.header(sec.Name())}
			out.warnings = append(out.warnings, fmt.Sprintf("%s: section [%s] and the %d settings in it are ignored; gitreceive.ini has no sections, put its settings above any [ ] line",
				at.where(), sec.Name(), len(sec.Keys())))
			continue
		}
		for _, k := range sec.Keys() {
			lineNumbers := lines.of(sec.Name(), k.Name())
			v := settingValue{value: k.String(), source: path}
			if len(lineNumbers) > 0 {
				v.line = lineNumbers[len(lineNumbers)-1] // ini.v1 keeps the last value
			}
			if !slices.Contains(known, k.Name()) {
				out.warnings = append(out.warnings, fmt.Sprintf("%s: unknown setting %s is ignored; %s", v.where(), k.Name(), suggestSetting(k.Name(), known)))
				continue
			}
			if len(lineNumbers) > 1 {
				out.warnings = append(out.warnings, fmt.Sprintf("%s: %s is set again (first on line %d); the last value counts, remove the others",
					v.where(), k.Name(), lineNumbers[0]))
			}
			if v.value != "" {
				out.values[k.Name()] = v
			}
		}
	}
	return out, nil
}

// suggestSetting says what an unknown key likely meant.
func suggestSetting(key string, known []string) string {
	if s := appconfig.Closest(strings.ReplaceAll(key, "-", "_"), known); s != "" {
		return "did you mean " + s + "?"
	}
	return "the settings are " + strings.Join(known, ", ")
}

// loadINI runs the ini parser, turning a panic in it into an error: it is
// third-party code reading a file an operator edits by hand.
func loadINI(data []byte) (f *ini.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("ini parser failed: %v", r)
		}
	}()
	return ini.Load(data)
}

// iniLines are the lines of each section's header and keys.
type iniLines map[string]map[string][]int // section -> key ("" for the header) -> lines

// keyLines finds the lines of sections and keys the way ini.v1 splits
// lines: a line starting with [ is a section header, # or ; a comment, and
// any other one a key before the first = or :. Values spanning lines
// (quotes, continuations) may add lines that are not keys; they are only
// looked up by the names ini.v1 found.
func keyLines(data []byte) iniLines {
	lines := iniLines{}
	section := ini.DefaultSection
	add := func(section, key string, n int) {
		if lines[section] == nil {
			lines[section] = map[string][]int{}
		}
		lines[section][key] = append(lines[section][key], n)
	}
	text := strings.TrimPrefix(string(data), "\ufeff") // ini.v1 drops a UTF-8 BOM
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimLeftFunc(raw, unicode.IsSpace)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if end := strings.LastIndexByte(line, ']'); end > 1 {
				section = strings.TrimSpace(line[1:end])
				add(section, "", i+1)
			}
		default:
			if end := strings.IndexAny(line, "=:"); end > 0 {
				add(section, strings.Trim(strings.TrimSpace(line[:end]), "\"`"), i+1)
			}
		}
	}
	return lines
}

// of is the lines that set key in section, in order.
func (l iniLines) of(section, key string) []int { return l[section][key] }

// header is the line of section's first header, 0 when unknown.
func (l iniLines) header(section string) int {
	if at := l[section][""]; len(at) > 0 {
		return at[0]
	}
	return 0
}
