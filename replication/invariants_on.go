//go:build invariants

package replication

// invariants is true in builds with -tags invariants: the checks of
// invariant.go run and panic on a broken invariant.
const invariants = true
