package bench

// Profile starts a CPU profile written to path and returns the function
// that stops it; with path "" it does nothing. Tools use it around a timed
// part whose benchmark has no CPUProfile option of its own.
func Profile(path string) (stop func(), err error) { return startProfile(path) }
