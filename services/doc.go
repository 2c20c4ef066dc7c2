// Package services provisions what apps ask for in app.ini (postgis,
// postgresql, mysql, redis, files, writable_root) per instance and hands the
// connection details over as CONFIG_* variables.
//
// Planned by the services issue.
package services
