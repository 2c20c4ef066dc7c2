// Package testbed starts N throw-away Debian "nodes" on this machine for
// tests that need real SSH targets.
//
// A node is a network namespace attached to a bridge in the root namespace
// through a veth pair, plus private mount, pid, uts and ipc namespaces. Inside,
// /etc, /var and /usr are copy-on-write overlays of the host's, /srv, /root and
// /home are per-node directories, /run and /tmp are tmpfs, and sshd listens
// on the node's address. PID 1 of every node is this package's own init,
// reached by re-executing the current binary (see nodeinit.go), so nodes need
// no extra package such as tini.
//
// Nodes have no default route: they can reach each other and the bridge
// address, nothing else.
//
// Each node also has its own cgroup subtree and cgroup namespace (see
// cgroup.go): /sys/fs/cgroup/{memory,pids,cpu} inside a node on a cgroup v1
// host, /sys/fs/cgroup on a pure v2 host, where the node agent makes
// per-instance cgroups as on a real node.
//
// Everything needs root, ip(8), unshare(1), nsenter(1), /usr/sbin/sshd and
// cgroup hierarchies with memory, pids and cpu; Require skips (or fails,
// when CI=true) otherwise.
package testbed
