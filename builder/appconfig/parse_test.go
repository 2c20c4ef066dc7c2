package appconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// minimalIni is the smallest app.ini that passes for app "myapp" on sampleTree.
const minimalIni = "[production]\napp_name = myapp\nrunner = src/app/wsgi.py\n"

// minimalConfig is what minimalIni parses to.
func minimalConfig() *Config {
	return &Config{
		AppName:     "myapp",
		Runner:      Runner{Path: "src/app/wsgi.py", Object: "application"},
		Platform:    PlatformPython,
		Config:      map[string]string{},
		HealthCheck: "/",
	}
}

func TestParseFullExample(t *testing.T) {
	data := `# The sample app.
[production]
app_name = myapp
runner = src/app/wsgi.py#app
platform = python
update_fetch =
    /setup
    # migrations run before the cache is warmed
    script:bin/migrate --all  now
    /warm?all=1
default_location = Blog.Example.com/notes/
service.postgis =
service.files = uploads
packages = libxml2-dev
    python3-psycopg2 g++
config.secret_key = s3cr#t ; not a comment
config.Mail.From-Address = me@example.com
health_check = /health
health_check_timeout = 45
workers = 4
harakiri = 60
max_requests = 1000
reload_on_rss = 256

[staging]
location = {branch}.staging.example.com
branches = staging, feature-*
seed_from = main

[branch:beta]
location = Beta.example.com
`
	want := &Config{
		AppName:  "myapp",
		Runner:   Runner{Path: "src/app/wsgi.py", Object: "app"},
		Platform: PlatformPython,
		UpdateFetch: []FetchItem{
			{URLPath: "/setup"},
			{Script: "bin/migrate", Args: []string{"--all", "now"}},
			{URLPath: "/warm?all=1"},
		},
		DefaultLocation: &Location{Host: "blog.example.com", Path: "/notes"},
		Services:        []Service{{Name: "files", Value: "uploads"}, {Name: "postgis"}},
		Packages:        []string{"libxml2-dev", "python3-psycopg2", "g++"},
		Config: map[string]string{
			"secret_key":        "s3cr#t ; not a comment",
			"Mail.From-Address": "me@example.com",
		},
		HealthCheck:        "/health",
		HealthCheckTimeout: 45,
		Workers:            4,
		Harakiri:           60,
		MaxRequests:        1000,
		ReloadOnRSS:        256,
		Staging:            Staging{Location: "{branch}.staging.example.com", Branches: []string{"staging", "feature-*"}, SeedFrom: "main"},
		BranchLocations:    map[string]Location{"beta": {Host: "beta.example.com"}},
	}
	got, warnings, err := Parse("app.ini", []byte(data), "myapp", sampleTree)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %v, want none", warnings)
	}
	got.at = nil // key positions: limits_test.go checks what they are for
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}

// validCase is an app.ini that must parse; want adjusts minimalConfig to
// what it parses to.
type validCase struct {
	name string
	ini  string
	want func(c *Config)
}

var validCases = []validCase{
	{"minimal", minimalIni, func(*Config) {}},
	{"https required", minimalIni + "https = required\n", func(c *Config) { c.HTTPS = HTTPSRequired }},
	{"https off", minimalIni + "https = off\n", func(c *Config) { c.HTTPS = HTTPSOff }},
	{"runner object after # is not a comment",
		"[production]\napp_name = myapp\nrunner = src/app/wsgi.py#app\n",
		func(c *Config) { c.Runner.Object = "app" }},
	{"runner path is normalised",
		"[production]\napp_name = myapp\nrunner = ./src//app/wsgi.py\n",
		func(*Config) {}},
	{"colon delimiter",
		"[production]\napp_name: myapp\nrunner: src/app/wsgi.py\n",
		func(*Config) {}},
	{"CRLF line endings and a BOM",
		"\ufeff[production]\r\napp_name = myapp\r\nrunner = src/app/wsgi.py\r\npackages =\r\n  git\r\n  curl\r\n",
		func(c *Config) { c.Packages = []string{"git", "curl"} }},
	{"surrounding quotes are dropped",
		"[production]\napp_name = \"myapp\"\nrunner = 'src/app/wsgi.py'\n",
		func(*Config) {}},
	{"php platform, case-insensitive",
		"[production]\napp_name = myapp\nplatform = PHP\nrunner = index.php\n",
		func(c *Config) { c.Platform, c.Runner = PlatformPHP, Runner{Path: "index.php"} }},
	{"php_root directory",
		"[production]\napp_name = myapp\nplatform = php\nrunner = web/index.php\nphp_root = web/\n",
		func(c *Config) { c.Platform, c.Runner, c.PHPRoot = PlatformPHP, Runner{Path: "web/index.php"}, "web" }},
	{"php_root . is the app root",
		"[production]\napp_name = myapp\nplatform = php\nrunner = index.php\nphp_root = .\n",
		func(c *Config) { c.Platform, c.Runner = PlatformPHP, Runner{Path: "index.php"} }},
	{"default_location host only",
		minimalIni + "default_location = example.com\n",
		func(c *Config) { c.DefaultLocation = &Location{Host: "example.com"} }},
	{"default_location bare slash",
		minimalIni + "default_location = example.com/\n",
		func(c *Config) { c.DefaultLocation = &Location{Host: "example.com"} }},
	{"default_location nested path",
		minimalIni + "default_location = a-1.example.com/x/y.z~_-\n",
		func(c *Config) { c.DefaultLocation = &Location{Host: "a-1.example.com", Path: "/x/y.z~_-"} }},
	{"update_fetch on the key line",
		minimalIni + "update_fetch = script:bin/setup.py\n",
		func(c *Config) { c.UpdateFetch = []FetchItem{{Script: "bin/setup.py"}} }},
	{"packages on one line",
		minimalIni + "packages = git  curl\tlibpq5\n",
		func(c *Config) { c.Packages = []string{"git", "curl", "libpq5"} }},
	{"services sorted with values kept",
		minimalIni + "service.writable_root = \nservice.redis = 6\nservice.mysql = x\n",
		func(c *Config) {
			c.Services = []Service{{Name: "mysql", Value: "x"}, {Name: "redis", Value: "6"}, {Name: "writable_root"}}
		}},
	{"config value kept verbatim",
		minimalIni + "config._x = a = b # c\n",
		func(c *Config) { c.Config["_x"] = "a = b # c" }},
	{"worker settings at their limits",
		minimalIni + "workers = 64\nharakiri = 1\nmax_requests = 1000000\nreload_on_rss = 16\n",
		func(c *Config) { c.Workers, c.Harakiri, c.MaxRequests, c.ReloadOnRSS = 64, 1, 1000000, 16 }},
	{"resource keys",
		minimalIni + "memory = 1G\nmax_processes = 64\ncpu_weight = 500\n",
		func(c *Config) { c.MemoryMB, c.MaxProcesses, c.CPUWeight = 1024, 64, 500 }},
	{"memory in lowercase megabytes",
		minimalIni + "memory = 256m\n",
		func(c *Config) { c.MemoryMB = 256 }},
	{"memory as a plain number is megabytes",
		minimalIni + "memory = 2048\n",
		func(c *Config) { c.MemoryMB = 2048 }},
	{"resource keys at their lower limits",
		minimalIni + "memory = 32MB\nmax_processes = 8\ncpu_weight = 1\n",
		func(c *Config) { c.MemoryMB, c.MaxProcesses, c.CPUWeight = 32, 8, 1 }},
	{"resource keys at their upper limits",
		minimalIni + "memory = 16384g\nmax_processes = 4194304\ncpu_weight = 10000\n",
		func(c *Config) { c.MemoryMB, c.MaxProcesses, c.CPUWeight = 16<<20, 4194304, 10000 }},
	{"empty optional keys mean unset",
		minimalIni + "platform =\nhealth_check =\nworkers =\ndefault_location =\nphp_root =\nmemory =\nmax_processes =\ncpu_weight =\n",
		func(*Config) {}},
	{"comment lines between keys",
		"; made by hand\n[production]\n# the app\napp_name = myapp\n\n; runs here\nrunner = src/app/wsgi.py\n",
		func(*Config) {}},
	{"other sections are ignored",
		"[development]\nrunner = nowhere.txt\n" + minimalIni + "[other]\nbogus = yes\n",
		func(*Config) {}},
	{"long multi-line value past the parser's default buffer",
		minimalIni + "packages =\n" + strings.Repeat("  python3-package-with-a-long-name\n", 300) + "health_check = /up\n",
		func(c *Config) {
			for range 300 {
				c.Packages = append(c.Packages, "python3-package-with-a-long-name")
			}
			c.HealthCheck = "/up"
		}},
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Parse("app.ini", []byte(tc.ini), "myapp", sampleTree)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := minimalConfig()
			tc.want(want)
			got.at = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// errorCase is an app.ini that must be refused with an error on line,
// about key, whose text has every one of facts.
type errorCase struct {
	name  string
	ini   string
	line  int
	key   string
	facts []string
}

var errorCases = []errorCase{
	// The file as a whole.
	{"too big", minimalIni + "config.pad = " + strings.Repeat("x", MaxFileSize) + "\n",
		0, "", []string{"1 MiB"}},
	{"NUL byte", minimalIni + "config.x = a\x00b\n", 4, "", []string{"NUL"}},
	{"invalid UTF-8", "[production]\napp_name = my\xffapp\n", 2, "", []string{"UTF-8"}},
	{"UTF-16", "\xff\xfe[\x00p\x00", 1, "", []string{"UTF-8"}},
	{"line without =", minimalIni + "just words\n", 4, "", []string{"cannot parse", "just words", "key = value"}},
	{"unclosed section", "[production\napp_name = myapp\n", 1, "", []string{"cannot parse", "unclosed section"}},
	{"blank line inside a multi-line value", minimalIni + "update_fetch =\n  /a\n\n  /b\n", 7, "",
		[]string{"cannot parse", "blank line"}},
	{"too many keys", minimalIni + strings.Repeat("config.k = v\n", maxKeys), maxKeys + 2, "",
		[]string{"more than 1000 keys"}},
	{"too many sections", strings.Repeat("[other]\n", maxSections) + minimalIni, maxSections + 1, "",
		[]string{"more than 100 sections"}},
	{"value with too many lines", minimalIni + "packages =\n" + strings.Repeat("  git\n", maxValueLines), 4, "packages",
		[]string{"more than 500 lines"}},
	{"no production section", "app_name = myapp\nrunner = src/app/wsgi.py\n", 0, "",
		[]string{"no [production] section", "add a line [production] above the keys"}},
	{"misspelt production section", "[Production]\napp_name = myapp\n", 1, "",
		[]string{"[Production]", "rename it to [production]"}},

	// app_name
	{"app_name missing", "[production]\nrunner = src/app/wsgi.py\n", 1, "app_name",
		[]string{"missing", "app_name = myapp"}},
	{"app_name empty", "[production]\napp_name =\nrunner = src/app/wsgi.py\n", 2, "app_name",
		[]string{"empty", "app_name = myapp"}},
	{"runner only a comment", "[production]\napp_name = myapp\nrunner =\n    # later\n", 3, "runner",
		[]string{"is empty", "runner = src/app/wsgi.py"}},
	{"app_name of another app", "[production]\napp_name = blog\nrunner = src/app/wsgi.py\n", 2, "app_name",
		[]string{"app_name = blog but you pushed to myapp", "set app_name = myapp or push to the blog remote"}},
	{"app_name a look-alike of the app's", "[production]\napp_name = my\u0430pp\nrunner = src/app/wsgi.py\n", 2, "app_name",
		[]string{`app_name = "my\u0430pp" but you pushed to myapp`}},
	{"indented key continues the value above", "[production]\napp_name = myapp\n  runner = src/app/wsgi.py\n", 2, "app_name",
		[]string{"line 3", "runner = src/app/wsgi.py", "indented"}},

	// runner
	{"runner missing", "[production]\napp_name = myapp\n", 1, "runner", []string{"missing", "runner = src/app/wsgi.py"}},
	{"runner not in tree", "[production]\napp_name = myapp\nrunner = src/x.py\n", 3, "runner",
		[]string{"src/x.py does not exist in the pushed tree", "relative to the app root"}},
	{"runner is a directory", "[production]\napp_name = myapp\nrunner = src/app\n", 3, "runner",
		[]string{"src/app", ".py"}},
	{"runner directory named like a file", "[production]\napp_name = myapp\nrunner = src/app.py\n", 3, "runner",
		[]string{"src/app.py does not exist"}},
	{"runner absolute", "[production]\napp_name = myapp\nrunner = /srv/app/wsgi.py\n", 3, "runner",
		[]string{"/srv/app/wsgi.py", "absolute"}},
	{"runner with ..", "[production]\napp_name = myapp\nrunner = src/../../wsgi.py\n", 3, "runner",
		[]string{"src/../../wsgi.py", ".."}},
	{"runner is the root", "[production]\napp_name = myapp\nrunner = ./#app\n", 3, "runner",
		[]string{`"./"`, "app root, not a file"}},
	{"python runner not .py", "[production]\napp_name = myapp\nrunner = index.php\n", 3, "runner",
		[]string{"index.php is not a .py file", "platform = php"}},
	{"python runner object not an identifier", "[production]\napp_name = myapp\nrunner = src/app/wsgi.py#my-app\n", 3, "runner",
		[]string{`"my-app"`, "Python identifier"}},
	{"python runner object starts with a digit", "[production]\napp_name = myapp\nrunner = src/app/wsgi.py#1app\n", 3, "runner",
		[]string{`"1app"`, "Python identifier"}},
	{"python runner object is a keyword", "[production]\napp_name = myapp\nrunner = src/app/wsgi.py#class\n", 3, "runner",
		[]string{`"class"`, "keyword"}},
	{"python runner empty object", "[production]\napp_name = myapp\nrunner = src/app/wsgi.py#\n", 3, "runner",
		[]string{"after #", "empty"}},
	{"php runner not .php", "[production]\napp_name = myapp\nplatform = php\nrunner = src/app/wsgi.py\n", 4, "runner",
		[]string{"src/app/wsgi.py is not a .php file"}},
	{"php runner with object", "[production]\napp_name = myapp\nplatform = php\nrunner = index.php#main\n", 4, "runner",
		[]string{"index.php#main", "only python runners"}},

	// platform
	{"unknown platform", minimalIni + "platform = ruby\n", 4, "platform", []string{`"ruby"`, "python", "php"}},

	// php_root
	{"php_root missing dir", "[production]\napp_name = myapp\nplatform = php\nrunner = index.php\nphp_root = public\n", 5, "php_root",
		[]string{"public does not exist in the pushed tree"}},
	{"php_root is a file", "[production]\napp_name = myapp\nplatform = php\nrunner = index.php\nphp_root = index.php\n", 5, "php_root",
		[]string{"index.php is a file"}},
	{"php_root with ..", "[production]\napp_name = myapp\nplatform = php\nrunner = index.php\nphp_root = ../www\n", 5, "php_root",
		[]string{"../www", ".."}},
	{"php_root absolute", "[production]\napp_name = myapp\nplatform = php\nrunner = index.php\nphp_root = /var/www\n", 5, "php_root",
		[]string{"/var/www", "absolute"}},

	// update_fetch
	{"update_fetch neither path nor script", minimalIni + "update_fetch =\n  /ok\n  setup\n", 6, "update_fetch",
		[]string{`"setup"`, "URL path starting with /", "script:PATH"}},
	{"update_fetch path with a space", minimalIni + "update_fetch = /a b\n", 4, "update_fetch",
		[]string{`"/a b"`, "space"}},
	{"update_fetch path for another host", minimalIni + "update_fetch = //evil.example/x\n", 4, "update_fetch",
		[]string{"//evil.example/x", "another host"}},
	{"update_fetch path with a control character", minimalIni + "update_fetch = /a\x7fb\n", 4, "update_fetch",
		[]string{"control character"}},
	{"update_fetch script missing", minimalIni + "update_fetch =\n    script:bin/nope.py --x\n", 5, "update_fetch",
		[]string{"bin/nope.py does not exist in the pushed tree"}},
	{"update_fetch script with ..", minimalIni + "update_fetch = script:../bin/setup.py\n", 4, "update_fetch",
		[]string{"../bin/setup.py", ".."}},
	{"update_fetch script absolute", minimalIni + "update_fetch = script:/bin/sh -c true\n", 4, "update_fetch",
		[]string{"/bin/sh", "absolute"}},
	{"update_fetch script is a directory", minimalIni + "update_fetch = script:bin\n", 4, "update_fetch",
		[]string{"bin is a directory"}},
	{"update_fetch script without a path", minimalIni + "update_fetch = script:\n", 4, "update_fetch",
		[]string{"names no script", "script:PATH"}},

	// default_location
	{"default_location with a port", minimalIni + "default_location = example.com:8080/blog\n", 4, "default_location",
		[]string{"example.com:8080/blog", "port"}},
	{"default_location wildcard", minimalIni + "default_location = *.example.com\n", 4, "default_location",
		[]string{"*.example.com", "wildcard"}},
	{"default_location scheme", minimalIni + "default_location = https://example.com\n", 4, "default_location",
		[]string{"https://", "drop it"}},
	{"default_location label starts with -", minimalIni + "default_location = -a.example.com\n", 4, "default_location",
		[]string{`"-a"`, "starts or ends with -"}},
	{"default_location label ends with -", minimalIni + "default_location = a-.example.com\n", 4, "default_location",
		[]string{`"a-"`, "starts or ends with -"}},
	{"default_location label too long", minimalIni + "default_location = " + strings.Repeat("a", 64) + ".com\n", 4, "default_location",
		[]string{"longer than 63"}},
	{"default_location host too long", minimalIni + "default_location = " + strings.Repeat("abcdefghi.", 26) + "com\n", 4, "default_location",
		[]string{"longer than 253"}},
	{"default_location underscore", minimalIni + "default_location = my_app.example.com\n", 4, "default_location",
		[]string{"'_'", "host name"}},
	{"default_location doubled dot", minimalIni + "default_location = example..com\n", 4, "default_location",
		[]string{"empty label"}},
	{"default_location IP address", minimalIni + "default_location = 10.0.0.1\n", 4, "default_location",
		[]string{"IP address"}},
	{"default_location no host", minimalIni + "default_location = /blog\n", 4, "default_location",
		[]string{"no host name"}},
	{"default_location ..", minimalIni + "default_location = example.com/a/../b\n", 4, "default_location",
		[]string{".. path segment"}},
	{"default_location empty segment", minimalIni + "default_location = example.com/a//b\n", 4, "default_location",
		[]string{"empty path segment"}},
	{"default_location bad path character", minimalIni + "default_location = example.com/a%20b\n", 4, "default_location",
		[]string{"'%'", "path"}},

	// service.*
	{"unknown service with suggestion", minimalIni + "service.postgres =\n", 4, "service.postgres",
		[]string{`"postgres"`, "did you mean service.postgresql", "postgis, postgresql, mysql, redis, files, writable_root"}},
	{"unknown service without suggestion", minimalIni + "service.mongodb =\n", 4, "service.mongodb",
		[]string{`"mongodb"`, "use one of postgis, postgresql"}},
	{"service without a name", minimalIni + "service. = x\n", 4, "service.",
		[]string{`""`, "use one of"}},

	// packages
	{"package with capitals", minimalIni + "packages = git Python-Dev\n", 4, "packages",
		[]string{`"Python-Dev"`, "Debian package name"}},
	{"package too short", minimalIni + "packages =\n  git\n  x\n", 6, "packages",
		[]string{`"x"`, "at least 2"}},
	{"package with a version", minimalIni + "packages = libpq5=12.0\n", 4, "packages",
		[]string{`"libpq5=12.0"`, "without a version"}},

	// config.*
	{"config name starting with a digit", minimalIni + "config.2fa = on\n", 4, "config.2fa",
		[]string{`"2fa"`, "start it with a letter or _"}},
	{"config without a name", minimalIni + "config. = on\n", 4, "config.",
		[]string{`""`, "config name"}},
	{"config name with a space", minimalIni + "config.a b = on\n", 4, "config.a b",
		[]string{`"a b"`, "letters, digits"}},

	// https
	{"https misspelt", minimalIni + "https = requried\n", 4, "https",
		[]string{`"requried"`, "did you mean required?", "optional"}},
	{"https yes", minimalIni + "https = yes\n", 4, "https", []string{`"yes"`, "required", "off"}},

	// health_check
	{"health_check without a slash", minimalIni + "health_check = health\n", 4, "health_check",
		[]string{`"health"`, "does not start with /", "/health"}},

	// worker settings
	{"workers not a number", minimalIni + "workers = many\n", 4, "workers",
		[]string{`"many"`, "whole number", "1 to 64"}},
	{"workers zero", minimalIni + "workers = 0\n", 4, "workers", []string{"0 is out of range", "1 to 64"}},
	{"workers too many", minimalIni + "workers = 65\n", 4, "workers", []string{"65 is out of range"}},
	{"harakiri too long", minimalIni + "harakiri = 3601\n", 4, "harakiri", []string{"3601", "1 to 3600 seconds"}},
	{"max_requests negative", minimalIni + "max_requests = -1\n", 4, "max_requests", []string{"-1", "1 to 1000000"}},
	{"reload_on_rss too small", minimalIni + "reload_on_rss = 8\n", 4, "reload_on_rss", []string{"8", "16 to 65536 MB"}},
	{"reload_on_rss overflows", minimalIni + "reload_on_rss = 99999999999999999999999\n", 4, "reload_on_rss",
		[]string{"out of range"}},

	// resource keys (the receiver's caps are checked by CheckLimits)
	{"memory not a size", minimalIni + "memory = lots\n", 4, "memory",
		[]string{`"lots"`, "not a size", "512M or 1G", "plain number is megabytes"}},
	{"memory with a fraction", minimalIni + "memory = 1.5G\n", 4, "memory", []string{`"1.5G"`, "not a size"}},
	{"memory in kilobytes", minimalIni + "memory = 524288K\n", 4, "memory", []string{`"524288K"`, "not a size"}},
	{"memory negative", minimalIni + "memory = -1G\n", 4, "memory", []string{`"-1G"`, "not a size"}},
	{"memory with a space", minimalIni + "memory = 512 M\n", 4, "memory", []string{`"512 M"`, "not a size"}},
	{"memory below the minimum", minimalIni + "memory = 16M\n", 4, "memory",
		[]string{"16M is less than 32M", "set memory = 32M or more"}},
	{"memory zero", minimalIni + "memory = 0\n", 4, "memory", []string{"0 is less than 32M"}},
	{"memory beyond any receiver", minimalIni + "memory = 99999999999999999999G\n", 4, "memory",
		[]string{"99999999999999999999G is more than any receiver allows", "16384G", "lower memory"}},
	{"memory just beyond any receiver", minimalIni + "memory = 16385G\n", 4, "memory", []string{"more than any receiver allows"}},
	{"max_processes too few", minimalIni + "max_processes = 7\n", 4, "max_processes",
		[]string{"7 is out of range", "8 to 4194304"}},
	{"max_processes not a number", minimalIni + "max_processes = lots\n", 4, "max_processes", []string{`"lots"`, "whole number"}},
	{"cpu_weight zero", minimalIni + "cpu_weight = 0\n", 4, "cpu_weight", []string{"0 is out of range", "1 to 10000"}},
	{"cpu_weight too big", minimalIni + "cpu_weight = 10001\n", 4, "cpu_weight", []string{"10001 is out of range"}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Parse("app.ini", []byte(tc.ini), "myapp", sampleTree)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config with its error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %q is not a non-empty Errors", err, err)
			}
			e := findError(errs, tc.key)
			if e == nil {
				t.Fatalf("no error about key %q in:\n%v", tc.key, err)
			}
			if e.File != "app.ini" || e.Line != tc.line {
				t.Errorf("error at %s:%d, want app.ini:%d: %v", e.File, e.Line, tc.line, e)
			}
			msg := e.Error()
			prefix := position("app.ini", tc.line) + ": "
			if tc.key != "" {
				prefix += tc.key + ": "
			}
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			for _, fact := range tc.facts {
				if !strings.Contains(msg, fact) {
					t.Errorf("error %q does not mention %q", msg, fact)
				}
			}
		})
	}
}

// findError is the first error about key ("" for the file as a whole).
func findError(errs Errors, key string) *Error {
	for _, e := range errs {
		if e.Key == key {
			return e
		}
	}
	return nil
}

// warningCase is an app.ini that parses, with a warning on line about key
// whose text has every one of facts.
type warningCase struct {
	name  string
	ini   string
	line  int
	key   string
	facts []string
}

var warningCases = []warningCase{
	{"unknown key", minimalIni + "runer = x\n", 4, "runer", []string{"unknown key runer; did you mean runner?"}},
	{"unknown key in another case", minimalIni + "Health_Check = /\n", 4, "Health_Check",
		[]string{"did you mean health_check?"}},
	{"misspelt family", minimalIni + "servce.postgis =\n", 4, "servce.postgis",
		[]string{"did you mean service.postgis?"}},
	{"misspelt config family", minimalIni + "conifg.key = 1\n", 4, "conifg.key",
		[]string{"did you mean config.key?"}},
	{"bare family", minimalIni + "service = postgis\n", 4, "service", []string{"service.NAME"}},
	{"misspelt memory", minimalIni + "memroy = 1G\n", 4, "memroy", []string{"did you mean memory?"}},
	{"misspelt max_processes", minimalIni + "max_process = 64\n", 4, "max_process", []string{"did you mean max_processes?"}},
	{"misspelt cpu_weight", minimalIni + "cpu_wieght = 50\n", 4, "cpu_wieght", []string{"did you mean cpu_weight?"}},
	{"unknown key far from any", minimalIni + "colour = blue\n", 4, "colour", []string{"unknown key colour", "spelling"}},
	{"key before any section", "app_name = myapp\n" + minimalIni, 1, "app_name",
		[]string{"app_name is outside any section", "[production]"}},
	{"key in [DEFAULT]", "[DEFAULT]\nworkers = 2\n" + minimalIni, 2, "workers",
		[]string{"workers is in [DEFAULT]", "ignored"}},
	{"php_root for python", minimalIni + "php_root = web\n", 4, "php_root",
		[]string{"php_root is ignored because platform is python"}},
	{"key set twice", minimalIni + "runner = src/app/models.py\n", 4, "runner",
		[]string{"runner is set again here, overriding line 3"}},
}

func TestParseWarnings(t *testing.T) {
	for _, tc := range warningCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warnings, err := Parse("app.ini", []byte(tc.ini), "myapp", sampleTree)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg == nil {
				t.Fatal("Parse returned no Config and no error")
			}
			var w *Warning
			for i := range warnings {
				if warnings[i].Key == tc.key {
					w = &warnings[i]
				}
			}
			if w == nil {
				t.Fatalf("no warning about key %q in %v", tc.key, warnings)
			}
			if w.Line != tc.line {
				t.Errorf("warning on line %d, want %d: %v", w.Line, tc.line, w)
			}
			s := w.String()
			if prefix := position("app.ini", tc.line) + ": "; !strings.HasPrefix(s, prefix) {
				t.Errorf("warning %q does not start with %q", s, prefix)
			}
			for _, fact := range tc.facts {
				if !strings.Contains(s, fact) {
					t.Errorf("warning %q does not mention %q", s, fact)
				}
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	data := "[production]\napp_name = blog\nrunner = src/x.py\nworkers = 0\n"
	_, _, err := Parse("app.ini -> src/sample/silver-app.ini", []byte(data), "myapp", sampleTree)
	want := "app.ini -> src/sample/silver-app.ini:2: app_name: app_name = blog but you pushed to myapp; set app_name = myapp or push to the blog remote\n" +
		"app.ini -> src/sample/silver-app.ini:3: runner: src/x.py does not exist in the pushed tree; " + pathFix + "\n" +
		"app.ini -> src/sample/silver-app.ini:4: workers: 0 is out of range; set a number from 1 to 64, or remove workers to use the default"
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error =\n%v\nwant\n%s", err, want)
	}
	var first *Error
	if !errors.As(err, &first) || first.Key != "app_name" {
		t.Errorf("errors.As(*Error) = %v, want the app_name error", first)
	}
}

func TestParseSyntaxErrorWrapsParserError(t *testing.T) {
	_, _, err := Parse("app.ini", []byte("[production\n"), "myapp", sampleTree)
	var e *Error
	if !errors.As(err, &e) || e.Err == nil || !errors.Is(err, e.Err) {
		t.Fatalf("Parse error %v does not wrap the parser's error", err)
	}
}

func TestErrorAndWarningFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"error with line and key", (&Error{File: "app.ini", Line: 4, Key: "runner", Message: "m"}).Error(), "app.ini:4: runner: m"},
		{"error without line", (&Error{File: "app.ini", Key: "runner", Message: "m"}).Error(), "app.ini: runner: m"},
		{"error without key", (&Error{File: "app.ini", Line: 2, Message: "m"}).Error(), "app.ini:2: m"},
		{"warning", Warning{File: "app.ini", Line: 3, Key: "runer", Message: "m"}.String(), "app.ini:3: m"},
		{"warning without line", Warning{File: "app.ini", Message: "m"}.String(), "app.ini: m"},
		{"errors", Errors{{File: "a", Message: "x"}, {File: "b", Line: 1, Message: "y"}}.Error(), "a: x\nb:1: y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}
