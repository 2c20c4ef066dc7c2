// Package nodes holds the node inventory, the pooled SSH client to nodes,
// the parallel delta fan-out with two-phase activation, and the node agent
// (`gitreceive node ...`). It knows nothing of git.
//
// Planned by the nodes issue.
package nodes
