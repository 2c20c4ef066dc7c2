// Package serverfiles is what turns a bare Debian/Ubuntu server into a
// gitreceive node: serverroot/ (files that go to the same paths under /:
// nginx's catch-all default server and the include of per-instance server
// blocks, the uWSGI emperor's config and systemd unit, the 404/503 pages) and
// update-server-script.sh, which installs the stack's packages, creates the
// apps' user and directories, copies serverroot/ into place and starts or
// reloads nginx and the emperor, with or without systemd.
//
// Both are embedded in the binary. Extract writes them into a directory (the
// node agent does that on the node); Setup extracts and runs the script. The
// script is idempotent: rerunning it is the upgrade, and on a node that is
// already set up it changes nothing and prints "setup done: nothing changed".
package serverfiles
