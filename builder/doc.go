// Package builder turns a pushed tree into a release: the app.ini model and
// its validation, .pth fixing, and the release manifest. It reads pushed
// objects through git plumbing (they are still quarantined during
// pre-receive) and knows nothing of SSH.
//
// Planned by the builder issue; the receiver calls it from its pre-receive
// handler (receiver.PreReceiveFunc).
package builder
