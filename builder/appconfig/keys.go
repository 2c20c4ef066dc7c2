package appconfig

import "strings"

// Keys with a fixed name that [production] may hold. service.NAME and
// config.NAME are families, matched by their prefix.
const (
	keyAppName         = "app_name"
	keyRunner          = "runner"
	keyPlatform        = "platform"
	keyPHPRoot         = "php_root"
	keyUpdateFetch     = "update_fetch"
	keyDefaultLocation = "default_location"
	keyPackages        = "packages"
	keyHealthCheck     = "health_check"
	keyWorkers         = "workers"
	keyHarakiri        = "harakiri"
	keyMaxRequests     = "max_requests"
	keyReloadOnRSS     = "reload_on_rss"
	keyHealthTimeout   = "health_check_timeout"
	keyMemory          = "memory"
	keyMaxProcesses    = "max_processes"
	keyCPUWeight       = "cpu_weight"

	servicePrefix = "service."
	configPrefix  = "config."
)

var knownKeys = []string{
	keyAppName, keyRunner, keyPlatform, keyPHPRoot, keyUpdateFetch, keyDefaultLocation,
	keyPackages, keyHealthCheck, keyWorkers, keyHarakiri, keyMaxRequests, keyReloadOnRSS,
	keyHealthTimeout, keyMemory, keyMaxProcesses, keyCPUWeight, keyCronTimezone, keyHTTPS,
}

// keyFamilies are the prefixes of service.NAME and config.NAME, without the dot.
var keyFamilies = []string{
	strings.TrimSuffix(servicePrefix, "."), strings.TrimSuffix(configPrefix, "."),
	strings.TrimSuffix(workerPrefix, "."), strings.TrimSuffix(cronPrefix, "."),
}

// warnUnknown warns about a key nothing reads. Such a key is ignored, not
// refused, but it is often a typo that silently drops a setting, so the
// warning says what was likely meant.
func (c *checker) warnUnknown(s setting) {
	if family, ok := familyWithoutName(s.key); ok {
		c.warnf(s.line(), s.key, "unknown key %s; write %s.NAME, e.g. %s", s.key, family, familyExample(family))
		return
	}
	if suggestion := suggestKey(s.key); suggestion != "" {
		c.warnf(s.line(), s.key, "unknown key %s; did you mean %s?", s.key, suggestion)
		return
	}
	c.warnf(s.line(), s.key, "unknown key %s is ignored; check its spelling", s.key)
}

// suggestKey is the known key nearest to a misspelt one, "" when none is
// close. A misspelt family prefix keeps the name after it, so servce.postgis
// suggests service.postgis.
func suggestKey(key string) string {
	if suggestion := closest(key, knownKeys); suggestion != "" {
		return suggestion
	}
	prefix, name, found := strings.Cut(key, ".")
	if !found || name == "" {
		return ""
	}
	if family := closest(prefix, keyFamilies); family != "" {
		return family + "." + name
	}
	return ""
}

// familyWithoutName spots a bare "service" or "config"; "service." and
// "config." are refused where their families are checked.
func familyWithoutName(key string) (string, bool) {
	for _, family := range keyFamilies {
		if key == family {
			return family, true
		}
	}
	return "", false
}

func familyExample(family string) string {
	switch family + "." {
	case servicePrefix:
		return "service.postgresql ="
	case workerPrefix:
		return "worker.mailer = bin/mailer.py"
	case cronPrefix:
		return "cron.cleanup = 0 3 * * * bin/cleanup.py"
	}
	return "config.secret_key = ..."
}
