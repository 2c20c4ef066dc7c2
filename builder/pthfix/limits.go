package pthfix

// Limits on what Fix accepts. A real .pth file lists a handful of short
// paths; anything near these sizes is a mistake (a binary or generated file
// committed under the wrong name), and the limits bound the work and the
// size of error messages a push can cause.
const (
	// MaxFileSize is the largest file Fix reads, and the largest it writes.
	MaxFileSize = 1 << 20
	// MaxLineLen is the longest line, in bytes without its line ending.
	MaxLineLen = 4096
	// maxReported is how many problems of one file an error lists before it
	// only counts the rest.
	maxReported = 10
)
