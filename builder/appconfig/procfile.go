package appconfig

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// ProcfileName is the Heroku-style process list an app may have at its root.
const ProcfileName = "Procfile"

// maxProcfileSize bounds what is read of a Procfile.
const maxProcfileSize = 64 << 10

// Procfile is what a Procfile declares: workers (every entry but web and
// release) and the release command, run like a script: line of
// update_fetch.
type Procfile struct {
	Workers []Worker
	Release *FetchItem
}

// ParseProcfile reads a Procfile: NAME: COMMAND [ARGS...] per line, blank
// lines and # comments allowed. Commands are split at spaces and never seen
// by a shell, and must be files of the tree, as for worker.NAME. web is
// served from app.ini's runner, so its line is ignored with a warning.
func ParseProcfile(data []byte, tree Tree) (Procfile, []Warning, error) {
	c := &checker{file: ProcfileName, tree: tree}
	var p Procfile
	if len(data) > maxProcfileSize {
		c.errorf(0, "", "is %d bytes, over the %d KiB limit; list one process per line", len(data), maxProcfileSize>>10)
		return p, c.warnings, c.errs
	}
	seen := map[string]int{}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := i + 1
		text := strings.TrimSpace(string(raw))
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, command, found := strings.Cut(text, ":")
		name = strings.TrimSpace(name)
		fields := strings.Fields(command)
		switch {
		case !found || len(fields) == 0:
			c.errorf(line, "", "%q is not NAME: COMMAND; write e.g. worker: bin/worker.py", text)
			continue
		case !names.IsProcess(name):
			c.errorf(line, "", "%q is not a process name; use 1-30 lowercase letters, digits, '_' or '-', starting with a letter", name)
			continue
		case seen[name] > 0:
			c.errorf(line, name, "%s is declared again (first on line %d); keep one", name, seen[name])
			continue
		}
		seen[name] = line
		if strings.ContainsAny(command, "$&|;<>`") {
			c.warnf(line, name, "the command is not run by a shell: $VARIABLES, &&, |, ; and redirections are passed to it as words; put them in a script in bin/")
		}
		cmd, problem := commandInTree(tree, fields[0])
		switch {
		case name == "web":
			c.warnf(line, name, "web is served from app.ini's runner; this line is ignored")
		case problem != "":
			c.errorf(line, name, "%s", problem)
		case name == "release":
			p.Release = &FetchItem{Script: cmd, Args: argsOf(fields)}
		default:
			p.Workers = append(p.Workers, Worker{Name: name, Command: cmd, Args: argsOf(fields), Count: 1,
				StopTimeout: defaultStopTimeout, From: fmt.Sprintf("%s:%d", ProcfileName, line)})
		}
	}
	if len(c.errs) > 0 {
		return Procfile{}, c.warnings, c.errs
	}
	return p, c.warnings, nil
}

// MergeProcfile adds p's workers to cfg, except those app.ini declares
// itself (app.ini wins), and its release command before update_fetch's
// items. It returns a warning for each worker app.ini overrides.
func (cfg *Config) MergeProcfile(p Procfile) []Warning {
	var warnings []Warning
	for _, w := range p.Workers {
		if i := slices.IndexFunc(cfg.BackgroundWorkers, func(x Worker) bool { return x.Name == w.Name }); i >= 0 {
			warnings = append(warnings, Warning{File: ProcfileName, Key: w.Name,
				Message: fmt.Sprintf("%s is also declared in %s, which wins; this entry is ignored", w.Name, cfg.BackgroundWorkers[i].From)})
			continue
		}
		cfg.BackgroundWorkers = append(cfg.BackgroundWorkers, w)
	}
	slices.SortFunc(cfg.BackgroundWorkers, func(a, b Worker) int { return strings.Compare(a.Name, b.Name) })
	if p.Release != nil {
		cfg.UpdateFetch = append([]FetchItem{*p.Release}, cfg.UpdateFetch...)
	}
	return warnings
}
