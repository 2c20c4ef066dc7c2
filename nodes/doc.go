// Package nodes knows the servers apps deploy to and how to reach them
// safely: the inventory (DATA/nodes.ini), the receiver's own client key
// (DATA/node_key), host keys pinned at `nodes add` (DATA/known_hosts), and
// `nodes list|add|remove|check`. It knows nothing of git.
//
// Still to come with the nodes issue: `nodes setup`, the node agent, the
// default `local` node, the connection pool and the parallel delta fan-out
// with two-phase activation. nodes/testbed provides real test nodes.
package nodes
