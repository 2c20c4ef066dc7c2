// Package serverfiles will embed serverroot/ (nginx, the uWSGI emperor, the
// default 404/503 apps) and update-server-script.sh, which `nodes setup`
// uploads to every node.
//
// Planned by the nodes and runtime issues.
package serverfiles
