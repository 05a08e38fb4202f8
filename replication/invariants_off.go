//go:build !invariants

package replication

// invariants is false in production builds: the checks of invariant.go
// compile to nothing.
const invariants = false
