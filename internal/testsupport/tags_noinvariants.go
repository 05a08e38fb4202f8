//go:build !invariants

package testsupport

// TagFlags are the build flags that give a binary built for a test the
// build tags of the test itself: none in this build (tags_invariants.go
// has the -tags invariants one).
func TagFlags() []string { return nil }
