//go:build !unix

package fleet

// openFileLimit is the process's open-file limit (0: unknown).
func openFileLimit() int { return 0 }
