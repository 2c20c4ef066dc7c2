package keystore

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// newFileHeader starts a store file the first time one is written, so whoever
// opens it by hand knows the format.
const newFileHeader = `# gitreceive keys: one per line, OpenSSH authorized_keys format.
# The comment is the key's name; role="admin" or apps="a,b" (deployer) as options.
`

// storeFile is the parsed store file. It keeps every line in order so that
// rewriting it after an Add or Remove preserves an operator's comments and
// blank lines.
type storeFile struct {
	lines []storeLine
}

// storeLine is one line of the file: either a key, or text (a comment or a
// blank line) that is written back unchanged.
type storeLine struct {
	key  *Key
	text string
}

// parseStoreFile parses the contents of the store file at path. path only
// labels errors, as path:line, so the operator can find the bad line.
func parseStoreFile(path string, data []byte) (*storeFile, error) {
	text := string(data)
	// A final newline ends the last line rather than starting an empty one.
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return &storeFile{}, nil
	}

	f := &storeFile{}
	seenNames := map[string]int{} // name -> line number
	seenKeys := map[string]int{}  // marshaled key -> line number
	for i, line := range strings.Split(text, "\n") {
		lineNo := i + 1
		if isBlankOrComment(line) {
			f.lines = append(f.lines, storeLine{text: line})
			continue
		}
		key, err := parseKeyLine(line)
		if err != nil {
			return nil, &lineError{path: path, line: lineNo, err: err}
		}
		if prev, ok := seenNames[key.Name]; ok {
			return nil, &lineError{path: path, line: lineNo, err: errorf(ErrDuplicate,
				"key name %q is also used on line %d; give each key its own name", key.Name, prev)}
		}
		marshaled := string(key.PublicKey.Marshal())
		if prev, ok := seenKeys[marshaled]; ok {
			return nil, &lineError{path: path, line: lineNo, err: errorf(ErrDuplicate,
				"key %s is also on line %d; keep only one of the two lines", key.Fingerprint(), prev)}
		}
		seenNames[key.Name] = lineNo
		seenKeys[marshaled] = lineNo
		f.lines = append(f.lines, storeLine{key: &key})
	}
	return f, nil
}

// parseKeyLine parses one non-blank, non-comment line of the store file.
func parseKeyLine(line string) (Key, error) {
	pub, comment, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Key{}, errorf(ErrMalformedStore, "not an authorized_keys line (%w); fix or remove it", err)
	}
	key := Key{Name: comment, Role: RoleDeployer, PublicKey: pub}
	if err := applyOptions(&key, options); err != nil {
		return Key{}, err
	}
	if err := key.validate(); err != nil {
		return Key{}, err
	}
	return key, nil
}

// applyOptions sets key's role and apps from the line's options. Only our
// two options are allowed: any other (command=, from=, ...) would suggest
// the operator expects OpenSSH to enforce it, and gitreceive does not.
func applyOptions(key *Key, options []string) error {
	seen := map[string]bool{}
	for _, opt := range options {
		name, value, err := splitOption(opt)
		if err != nil {
			return err
		}
		if seen[name] {
			return errorf(ErrMalformedStore, "option %s= is given twice; keep one", name)
		}
		seen[name] = true
		switch name {
		case "role":
			key.Role = Role(value)
		case "apps":
			key.Apps = splitApps(value)
		}
	}
	return nil
}

// splitOption splits an option of the form name="value".
func splitOption(opt string) (name, value string, err error) {
	name, quoted, found := strings.Cut(opt, "=")
	if name != "role" && name != "apps" {
		return "", "", errorf(ErrMalformedStore, "unknown option %q; only role= and apps= are allowed", opt)
	}
	if !found || len(quoted) < 2 || quoted[0] != '"' || quoted[len(quoted)-1] != '"' ||
		strings.ContainsAny(quoted[1:len(quoted)-1], `"\`) {
		return "", "", errorf(ErrMalformedStore, "option %q must look like %s=\"value\"", opt, name)
	}
	return name, quoted[1 : len(quoted)-1], nil
}

// splitApps splits the apps= value. Spaces around names are tolerated since
// the file is edited by hand; they are dropped when the file is rewritten.
func splitApps(value string) []string {
	var apps []string
	for _, app := range strings.Split(value, ",") {
		if app = strings.TrimSpace(app); app != "" {
			apps = append(apps, app)
		}
	}
	return apps
}

// keys returns the keys in file order.
func (f *storeFile) keys() []Key {
	var keys []Key
	for _, l := range f.lines {
		if l.key != nil {
			keys = append(keys, *l.key)
		}
	}
	return keys
}

// render returns the file contents: comment and blank lines as they were,
// key lines in canonical form.
func (f *storeFile) render() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		if l.key != nil {
			b.WriteString(formatKeyLine(*l.key))
		} else {
			b.WriteString(l.text)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// formatKeyLine renders k as a store line without the trailing newline. The
// role is always written out so nobody has to remember the default.
func formatKeyLine(k Key) string {
	options := fmt.Sprintf("role=%q", k.Role)
	if len(k.Apps) > 0 {
		options += fmt.Sprintf(",apps=%q", strings.Join(k.Apps, ","))
	}
	key := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(k.PublicKey), []byte("\n"))
	return options + " " + string(key) + " " + k.Name
}
