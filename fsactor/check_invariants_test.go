//go:build invariants

package fsactor

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestMountInvariantsChecked: built with -tags invariants, the actor
// checks the whole state after every step on a mount. The FUSE ops of a
// spool message (create, write, flush, rename, unlink) are checked, and
// clean; an invariant broken by one step (an internal event that corrupts
// the byte count, as a handler's bug would) is reported after that very
// step, before the next one runs.
func TestMountInvariantsChecked(t *testing.T) {
	var mu sync.Mutex
	var broken []error
	hook := func(err error) {
		mu.Lock()
		broken = append(broken, err)
		mu.Unlock()
	}
	reported := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), broken...)
	}
	invariantHook.Store(&hook)
	t.Cleanup(func() { invariantHook.Store(nil) })
	m := mountTest(t, Config{}, nil, nil)

	before := invariantChecks.Load()
	within(t, deadline, "a message through the mount", func() error {
		if err := os.WriteFile(m.path("msg.tmp"), []byte("hello"), 0o600); err != nil {
			return err
		}
		if err := os.Rename(m.path("msg.tmp"), m.path("msg")); err != nil {
			return err
		}
		return os.Remove(m.path("msg"))
	})
	if n := invariantChecks.Load() - before; n < 5 {
		t.Fatalf("%d checks after a create, write, flush, rename and unlink: want one per op", n)
	}
	if b := reported(); len(b) != 0 {
		t.Fatalf("a clean volume reported broken: %v", b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := m.srv.Do(ctx, func(st *State) { st.used += 4096 }); err != nil {
		t.Fatal(err)
	}
	// Do returns once its function ran; the check follows on the actor.
	testsupport.WaitFor(t, deadline, "the broken invariant reported", func() bool { return len(reported()) > 0 })
	if err := m.srv.Do(ctx, func(st *State) { st.used -= 4096 }); err != nil {
		t.Fatal(err)
	}
	if err := m.srv.Ping(ctx); err != nil { // runs after the repair's check
		t.Fatal(err)
	}
	// Every step while it was broken reported it (the kernel's own
	// requests, a FORGET, may have come in between); none after.
	b := reported()
	for _, err := range b {
		if !strings.Contains(err.Error(), "used ") {
			t.Fatalf("reported %v: want the broken byte count", err)
		}
	}
	before = invariantChecks.Load()
	within(t, deadline, "a stat after the repair", func() error {
		_, err := os.Stat(m.path("msg"))
		if !os.IsNotExist(err) {
			return err
		}
		return nil
	})
	if n := invariantChecks.Load() - before; n < 1 {
		t.Fatal("the lookup after the repair was not checked")
	}
	if after := reported(); len(after) != len(b) {
		t.Fatalf("reported after the repair: %v", after[len(b):])
	}
}

// TestBrokenInvariantPanics: without a test's hook, a broken invariant
// panics (the process dies at the step that broke it).
func TestBrokenInvariantPanics(t *testing.T) {
	h := newHarness(t, Config{})
	h.mkfile(rootIno, "f", "x")
	h.st.used++
	defer func() {
		h.st.used--
		if r := recover(); r == nil || !strings.Contains(r.(string), "broken invariant") {
			t.Fatalf("recovered %v, want a broken invariant's panic", r)
		}
	}()
	checkState(h.st)
}
