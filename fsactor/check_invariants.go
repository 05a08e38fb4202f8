//go:build invariants

package fsactor

import (
	"fmt"
	"sync/atomic"
)

// checkBudget paces the checks of -tags invariants builds: the state is
// checked after every step while the volume has at most checkBudget
// inodes, else after every len(inodes)/checkBudget steps, so a check costs
// about checkBudget inode checks per step, whatever the volume's size
// (fsactor/doc.go says why).
const checkBudget = 64

// invariantChecker is the loop's pacing of its checks (actor-owned).
type invariantChecker struct {
	unchecked int // steps since the last check
}

// step checks every invariant of the state after a step of the loop
// (a FUSE op or an internal event), paced by checkBudget, and panics on
// the first broken one: built with -tags invariants only (pebble's habit),
// never in production.
func (c *invariantChecker) step(m machine) {
	st, ok := m.(*State)
	if !ok {
		return // a fake machine in tests of the loop alone
	}
	c.unchecked++
	if c.unchecked*checkBudget < len(st.inodes) {
		return
	}
	c.unchecked = 0
	checkState(st)
}

// final checks the state once more when the loop ends, whatever the
// pacing skipped.
func (c *invariantChecker) final(m machine) {
	if st, ok := m.(*State); ok {
		checkState(st)
	}
}

// checkState runs State.invariantsErr and reports a broken invariant: to
// invariantHook when a test set it, else by panicking.
func checkState(st *State) {
	invariantChecks.Add(1)
	err := st.invariantsErr()
	if err == nil {
		return
	}
	if h := invariantHook.Load(); h != nil {
		(*h)(err)
		return
	}
	panic(fmt.Sprintf("fsactor: broken invariant after a step: %v", err))
}

var (
	// invariantHook, when set, gets a broken invariant instead of the
	// panic: the test that proves the check fires on a mount sees the
	// failure without killing its own process.
	invariantHook atomic.Pointer[func(error)]
	// invariantChecks counts the checks run, for that test.
	invariantChecks atomic.Uint64
)

// restoreCheck checks every invariant of a state just restored from a
// snapshot: in -tags invariants builds, a check of the restore itself
// (the restore's own checks guard against a bad snapshot in every build).
func restoreCheck(st *State) error { return st.invariantsErr() }
