// Package nodes knows the servers apps deploy to, how to reach them safely,
// and how to deploy to all of them at once: the inventory (DATA/nodes.ini),
// the receiver's own client key (DATA/node_key), host keys pinned at
// `nodes add` (DATA/known_hosts), `nodes list|add|remove|check`, and the
// two-phase delta fan-out (Fleet.Deploy) that drives the node agent
// (nodes/agent) over SSH. It knows nothing of git.
//
// Still to come with the nodes issue: `nodes setup`, the default `local`
// node and a connection pool. nodes/testbed provides real test nodes.
package nodes
