package appconfig

// Platform is the language runtime an app runs on.
type Platform string

// The platforms app.ini can ask for.
const (
	PlatformPython Platform = "python"
	PlatformPHP    Platform = "php"
)

// Runner is the script that serves the app: for python a WSGI file and the
// name of the application object in it, for php the front script.
type Runner struct {
	Path   string // in the tree, e.g. "src/app/wsgi.py"
	Object string // python: "application" unless app.ini names another; php: ""
}

// FetchItem is one line of update_fetch, run after each deploy. Exactly one
// of URLPath and Script is set.
type FetchItem struct {
	URLPath string   // a path on the app, e.g. "/setup"
	Script  string   // a file in the tree, run with Args
	Args    []string // nil when the script takes none
}

// Location is where the app is served unless the deployer says otherwise.
type Location struct {
	Host string // a lowercase DNS host name
	Path string // "" or "/prefix", never with a trailing slash
}

// Service is one service.NAME key: something the app needs provisioned.
type Service struct {
	Name  string // one of KnownServices
	Value string // the key's value, possibly empty
}

// Config is the validated [production] section of app.ini.
type Config struct {
	AppName         string
	Runner          Runner
	Platform        Platform
	PHPRoot         string // directory in the tree, php only; "" for the app root or unset
	UpdateFetch     []FetchItem
	DefaultLocation *Location         // nil when unset
	Services        []Service         // sorted by name
	Packages        []string          // Debian package names
	Config          map[string]string // config.NAME keys by NAME, values verbatim; never nil
	HealthCheck     string            // URL path on the app, default "/"
	HTTPS           string            // https: HTTPSRequired, HTTPSOptional or HTTPSOff; "" when unset (optional)

	// Staging and BranchLocations are [staging] and the [branch:NAME]
	// sections: where and whether other branches are deployed.
	Staging         Staging
	BranchLocations map[string]Location // by branch name; nil when there are none

	// HealthCheckTimeout is how many seconds a new release has to answer
	// its health check with a status below 500; 0 means the default.
	HealthCheckTimeout int

	// Worker settings; 0 means the default.
	Workers     int // worker processes
	Harakiri    int // seconds before a stuck request's worker is killed
	MaxRequests int // requests a worker serves before it is recycled
	ReloadOnRSS int // MB of resident memory before a worker is recycled

	// Resource keys: what the instance may use on each node (cgroup v2
	// memory.max, pids.max, cpu.weight). 0 means the receiver's default;
	// CheckLimits holds them to the receiver's caps.
	MemoryMB     int // MB all the instance's processes may use together
	MaxProcesses int // processes and threads the instance may run at once
	CPUWeight    int // share of CPU time against other instances, 1-10000 (default 100)

	// Background processes (worker.NAME, cron.NAME, and a Procfile's
	// entries once MergeProcfile has run), sorted by name.
	BackgroundWorkers []Worker
	CronJobs          []CronJob
	CronTimezone      string // IANA name the schedules are read in; "" is UTC

	// at is where the keys CheckLimits judges were set; nil for a Config
	// not made by Parse.
	at *keyPositions
}
