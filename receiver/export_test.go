package receiver

// SetPanicHook makes the points testPoint names call f (which may panic)
// until the returned restore runs.
func SetPanicHook(f func(point string)) (restore func()) {
	panicHook.Store(&f)
	return func() { panicHook.Store(nil) }
}
