//go:build invariants

package testsupport

// TagFlags are the build flags that give a binary built for a test the
// build tags of the test itself: with -tags invariants, the spoolfs a test
// runs checks its invariants too (fsactor's actor after every step).
func TagFlags() []string { return []string{"-tags", "invariants"} }
