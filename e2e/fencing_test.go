package e2e

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestFencing: primary P1 serves a volume; a second node P2 mounts the same
// volume (a new term) on another directory. P1's write to a file it
// opened before fails with EROFS or its close() with EIO, its later
// mutations with EROFS, and P2's
// state has none of them — only what P1 had acknowledged.
func TestFencing(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "fencing"
	p1 := c.startPrimary(vol, "p1", "--flush-timeout", "5s")

	// Before the fence: "dirty" is created, then "acked" is written and
	// closed, which makes the creation of "dirty" durable too. "dirty" gets
	// its data only after P2 started: starting a process closes its
	// inherited copy of every descriptor, and that close is a FLUSH that
	// would ship the data before the fence.
	dirtyFd, err := unix.Open(p1.path("dirty"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirtyFd)
	acked := bytes.Repeat([]byte("acknowledged "), 100)
	if err := os.WriteFile(p1.path("acked"), acked, 0o644); err != nil {
		t.Fatalf("write acked (before the fence): %v", err)
	}

	p2 := c.startPrimary(vol, "p2")

	// P1 learns of the fence from the replicas within milliseconds, idle
	// or not (docs/failures.md, 5): the write answers EROFS if it knows
	// already, else the close that would ship it answers EIO.
	_, werr := unix.Write(dirtyFd, []byte("written by P1 after P2 took the volume: must never be seen"))
	if werr != nil && !errors.Is(werr, unix.EROFS) {
		t.Fatalf("P1: write after P2 took the volume: %v, want success or EROFS", errName(werr))
	}
	t.Logf("P1: write after P2 took the volume: %s", errName(werr))
	start := time.Now()
	err = unix.Close(dirtyFd)
	dirtyFd = -1
	if werr == nil && !errors.Is(err, unix.EIO) {
		t.Errorf("P1: close of the dirty file after P2 took the volume: %v, want EIO", errName(err))
	}
	t.Logf("P1: close of the dirty file answered %s after %v", errName(err), time.Since(start).Round(time.Millisecond))

	// From now on P1 is read-only.
	err = os.WriteFile(p1.path("after"), []byte("after"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("P1: create after the fence: %v, want EROFS", errName(err))
	}
	if err := unix.Mkdir(p1.path("dir-after"), 0o755); !errors.Is(err, unix.EROFS) {
		t.Errorf("P1: mkdir after the fence: %v, want EROFS", errName(err))
	}
	if err := unix.Rename(p1.path("acked"), p1.path("renamed")); !errors.Is(err, unix.EROFS) {
		t.Errorf("P1: rename after the fence: %v, want EROFS", errName(err))
	}
	if err := unix.Unlink(p1.path("acked")); !errors.Is(err, unix.EROFS) {
		t.Errorf("P1: unlink after the fence: %v, want EROFS", errName(err))
	}
	if got, err := os.ReadFile(p1.path("acked")); err != nil || !bytes.Equal(got, acked) {
		t.Errorf("P1: reading still works after the fence: %v", err)
	}

	// P2 has what P1 acknowledged and nothing P1 did after the fence.
	if got, err := os.ReadFile(p2.path("acked")); err != nil || !bytes.Equal(got, acked) {
		t.Errorf("P2: acked: %v (%d bytes), want the %d bytes P1 acknowledged", err, len(got), len(acked))
	}
	if got, err := os.ReadFile(p2.path("dirty")); err != nil || len(got) != 0 {
		t.Errorf("P2: dirty: %v, %q: want the empty file P1 created before the fence, without P1's later data", err, got)
	}
	for _, name := range []string{"after", "dir-after", "renamed"} {
		if exists(p2.path(name)) {
			t.Errorf("P2: %s exists: P1's change after the fence reached the new primary", name)
		}
	}
	// P2 writes; P1 does not see it (it is fenced, not a follower).
	if err := os.WriteFile(p2.path("p2-file"), []byte("p2"), 0o644); err != nil {
		t.Errorf("P2: write: %v", err)
	}
	// The log line travels through a pipe to the harness: wait for it.
	testsupport.WaitFor(t, waitDeadline, "P1 to log why it turned read-only", func() bool { return strings.Contains(p1.out.String(), "read-only") })
	p1.stop(t)
	p2.stop(t)
}
