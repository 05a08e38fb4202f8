//go:build !invariants

package fsactor

// invariantChecker is empty without -tags invariants: its methods do
// nothing and cost nothing (check_invariants.go has that build's).
type invariantChecker struct{}

// step checks the state after a step, in the invariants build only.
func (invariantChecker) step(machine) {}

// final checks the state when the loop ends, in the invariants build only.
func (invariantChecker) final(machine) {}

// restoreCheck checks a state just restored, in the invariants build only:
// the restore's own checks (snapshot_state.go) cover what a bad snapshot
// can break, and a full check costs a fifth of a large restore.
func restoreCheck(*State) error { return nil }
