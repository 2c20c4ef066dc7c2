package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// vassalConfig is everything a vassal file says, resolved.
type vassalConfig struct {
	App, Instance string
	N             int
	Spec          Spec   // with defaults, validated
	ReleaseDir    string // real path
	Socket        string
	LogFile       string
	Bootstrap     string // python: the WSGI file; php: the env script run before each request
	UID, GID      int    // the instance's user and group
	NginxGID      int    // the socket's group: nginx's workers connect through it
	Cgroup        bool   // the emperor's wrapper puts the master into the instance's cgroup
	PythonDir     string // gitreceive's Python support, "" for none (Runtime.PythonDir)
}

// iniSafe is what a path may hold in a vassal file. uWSGI expands '%' in
// values ('%%' is a literal one; instance names may hold '%'), and '$(' and
// '@(' with no escape at all: no '$' or '(' passes.
var iniSafe = regexp.MustCompile(`^/[A-Za-z0-9._/%+@-]*$`)

// iniPath returns p as a uWSGI ini value.
func iniPath(p string) (string, error) {
	if !iniSafe.MatchString(p) {
		return "", fmt.Errorf("path %q cannot be written into a vassal file (allowed: letters, digits and ._/%%+@-)", p)
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// vassalINI is the vassal file. Nothing from the wire reaches it except
// through Spec's allow-listed paths and numbers; env values never do.
func vassalINI(c vassalConfig) (string, error) {
	s := c.Spec
	paths := map[string]string{"release": c.ReleaseDir, "socket": c.Socket, "log": c.LogFile, "bootstrap": c.Bootstrap}
	q := map[string]string{}
	for name, p := range paths {
		v, err := iniPath(p)
		if err != nil {
			return "", fmt.Errorf("vassal file, %s: %w", name, err)
		}
		q[name] = v
	}
	// sun_path holds 108 bytes, its NUL included.
	if len(c.Socket) > 107 {
		return "", fmt.Errorf("socket path %s is longer than the 107 bytes a unix socket address holds", c.Socket)
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// Comment lines are skipped whole by uWSGI, '%' included.
	line("; %s/%s v%d, written by gitreceive's node agent when the release starts and", c.App, c.Instance, c.N)
	line("; removed when it stops; edits are lost. The app's environment is not here:")
	line("; the bootstrap reads it from the instance's env file (see nodes/agent/vassal.go).")
	line("[uwsgi]")
	line("; Unknown options are errors, not silently ignored.")
	line("strict = true")
	switch s.Platform {
	case "python":
		line("plugins = python3")
	case "php":
		line("; As modifier 0, so nginx's uwsgi_pass needs no uwsgi_modifier1 14.")
		line("plugins = 0:php")
	}
	if c.Cgroup {
		// Read by the emperor's wrapper (VassalExec), which puts the master
		// into the instance's cgroup with these limits before uWSGI runs.
		line("%s %s %d %d %d", vassalLimitsMarker, InstanceID(c.App, c.Instance), s.MemoryMB, s.MaxProcesses, s.CPUWeight)
	}
	line("; The socket is bound while the master is still root (chown-socket makes")
	line("; uWSGI bind it before dropping privileges), in a directory only root may")
	line("; write, so no app can rename or replace it, and handed to the instance's user")
	line("; and nginx's group. uWSGI then also opens the log as root: it lies in a")
	line("; directory only root may write (see uwsgiLogPath), never in the app's own.")
	line("uid = %d", c.UID)
	line("gid = %d", c.GID)
	line("chdir = %s", q["release"])
	line("; The interpreter's encoding: a C locale would make Python's ASCII, and a")
	line("; reload starts from the app's environment, which need not say.")
	line("env = LANG=C.UTF-8")
	line("master = true")
	line("processes = %d", s.Workers)
	line("harakiri = %d", s.Harakiri)
	line("max-requests = %d", s.MaxRequests)
	line("reload-on-rss = %d", s.ReloadOnRSS)
	if s.IdleStop > 0 {
		line("; Idle: the workers stop after this many seconds without a request")
		line("; (cheap mode); the master keeps the socket and starts them on the next.")
		line("idle = %d", s.IdleStop)
	}
	line("socket = %s", q["socket"])
	line("chown-socket = %d:%d", c.UID, c.NginxGID)
	line("chmod-socket = 660")
	line("; No vacuum: the instance's user cannot remove the socket from root's")
	line("; directory; stopRelease does.")
	line("; Room for long URLs and cookies (uWSGI's default is 4 KB).")
	line("buffer-size = 32768")
	line("; Every vassal of the instance logs to app.log; uWSGI's own lines say which.")
	line("log-prefix = [v%d]", c.N)
	line("logto2 = %s", q["log"])
	switch s.Platform {
	case "python":
		line("; An app that fails to import must not run.")
		line("need-app = true")
		line("single-interpreter = true")
		line("enable-threads = true")
		line("wsgi-file = %s", q["bootstrap"])
		line("callable = application")
	case "php":
		if err := phpINI(c, q, line); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// pythonBootstrap is the WSGI file uWSGI loads: the environment from the
// env file (verbatim: '%', '$', quotes and spaces arrive as written), laid
// over the vassal's own (the emperor's clean one: PATH, LANG; and uWSGI's
// UWSGI_* variables, which a reload needs), the release's site
// directories, then the runner, whose callable it exposes.
func pythonBootstrap(c vassalConfig, envFile string) ([]byte, error) {
	lit := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a Python string literal
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s/%s v%d: the WSGI file uWSGI loads, written by gitreceive's node agent\n", c.App, c.Instance, c.N)
	b.WriteString("# at every start of the release. Edits are lost.\n")
	b.WriteString("import importlib.util\nimport os\nimport sys\n\n")
	fmt.Fprintf(&b, "RELEASE = %s\nENV_FILE = %s\nRUNNER = %s\nCALLABLE = %s\nPYTHON_SUPPORT = %s\n\n\n",
		lit(c.ReleaseDir), lit(envFile), lit(c.Spec.Runner), lit(c.Spec.Callable), lit(c.PythonDir))
	b.WriteString(`def _gitreceive_env(path):
    # KEY=VALUE lines, split at the first "=", nothing quoted or expanded.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = f.read().split("\n")
    for line in lines:
        if line:
            key, _, value = line.partition("=")
            os.environ[key] = value




_gitreceive_env(ENV_FILE)
# The release's site directories and silvercustomize, once the app's
# environment is in place (see gitreceive_site.py in PYTHON_SUPPORT).
if PYTHON_SUPPORT:
    sys.path.insert(0, PYTHON_SUPPORT)
    import gitreceive_site
    gitreceive_site.activate(RELEASE)
_spec = importlib.util.spec_from_file_location("gitreceive_runner", os.path.join(RELEASE, RUNNER))
_runner = importlib.util.module_from_spec(_spec)
sys.modules["gitreceive_runner"] = _runner
_spec.loader.exec_module(_runner)
try:
    application = getattr(_runner, CALLABLE)
except AttributeError:
    raise RuntimeError("runner %s defines no %s (app.ini: runner = FILE#CALLABLE)" % (RUNNER, CALLABLE)) from None
`)
	return []byte(b.String()), nil
}

// phpBootstrap runs before every request (php-exec-before): it puts the
// env file's variables into getenv(), $_ENV and $_SERVER, verbatim. PHP
// restores the process environment after each request, hence every time.
func phpBootstrap(c vassalConfig, envFile string) ([]byte, error) {
	if !iniSafe.MatchString(envFile) || strings.ContainsAny(envFile, `'\`) {
		return nil, fmt.Errorf("env file path %q cannot be written into PHP", envFile)
	}
	var b strings.Builder
	b.WriteString("<?php\n")
	fmt.Fprintf(&b, "// %s/%s v%d: run before every request, written by gitreceive's node agent\n", c.App, c.Instance, c.N)
	b.WriteString("// at every start of the release. Edits are lost.\n")
	b.WriteString("(static function () {\n")
	fmt.Fprintf(&b, "    $file = '%s';\n", envFile)
	b.WriteString(`    $data = file_get_contents($file);
    if ($data === false) {
        throw new RuntimeException("gitreceive: cannot read the environment from $file; start the release again");
    }
    foreach (explode("\n", $data) as $line) {
        $eq = strpos($line, '=');
        if ($eq === false) {
            continue;
        }
        $key = substr($line, 0, $eq);
        $value = substr($line, $eq + 1);
        putenv($line);
        $_ENV[$key] = $value;
        $_SERVER[$key] = $value;
    }
})();
`)
	return []byte(b.String()), nil
}

// phpINI writes the php vassal's lines: document root, what may run, the
// front controller and the bootstrap (q: the paths quoted for the file).
func phpINI(c vassalConfig, q map[string]string, line func(format string, args ...any)) error {
	s := c.Spec
	docroot := c.ReleaseDir
	if s.PHPRoot != "" && s.PHPRoot != "." {
		docroot = filepath.Join(c.ReleaseDir, s.PHPRoot)
	}
	qdoc, err := iniPath(docroot)
	if err != nil {
		return fmt.Errorf("vassal file, php_root: %w", err)
	}
	qrunner, err := iniPath(filepath.Join(c.ReleaseDir, s.Runner))
	if err != nil {
		return fmt.Errorf("vassal file, runner: %w", err)
	}
	line("php-docroot = %s", qdoc)
	line("; Only .php files under the document root run (and the front controller).")
	line("; No trailing slash: uWSGI checks the docroot itself, for its index.")
	line("php-allowed-docroot = %s", qdoc)
	if !strings.HasPrefix(filepath.Join(c.ReleaseDir, s.Runner), docroot+"/") {
		line("php-allowed-docroot = %s", qrunner)
	}
	line("php-allowed-ext = .php")
	line("php-index = index.php")
	if base := filepath.Base(s.Runner); filepath.Dir(filepath.Join(c.ReleaseDir, s.Runner)) == docroot && base != "index.php" {
		line("php-index = %s", base)
	}
	line("; The front controller answers paths that are not files.")
	line("php-fallback = %s", qrunner)
	line("php-exec-before = require '%s';", q["bootstrap"])
	return nil
}
