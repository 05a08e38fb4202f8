package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestReplicaDiskFull: two of three replicas keep their data on small
// tmpfs file systems that fill up. A close() whose data cannot be stored
// on two replicas fails with EIO within the flush timeout, and every close
// that returned 0 is kept. When space is freed the replicas — the same
// processes, not restarted — open their volumes again, the data the
// primary kept reaches them, and closes succeed again.
func TestReplicaDiskFull(t *testing.T) {
	requireCluster(t)
	testsupport.RequireRoot(t, "mounting small tmpfs file systems")
	const size = 4 << 20
	small := make([]string, 2)
	for i := range small {
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
			testsupport.Unavailable(t, "cannot mount a small tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		small[i] = dir
	}
	c := newClusterWith(t, 3, func(i int) []string {
		if i < 2 {
			return []string{"--data", small[i]}
		}
		return nil
	})
	const vol = "full"
	const flushTimeout = 2 * time.Second
	p := c.startPrimary(vol, "p1", "--flush-timeout", flushTimeout.String())

	// Leave about 600 KiB free on each small file system.
	for _, dir := range small {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		fill := int64(st.Bavail)*st.Bsize - 600<<10
		if err := os.WriteFile(filepath.Join(dir, "fill"), make([]byte, fill), 0o600); err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}

	content := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("message %d\n", i)), 64<<10/11) }
	var acked []int
	failed := -1
	for i := 0; i < 40 && failed < 0; i++ {
		start := time.Now()
		err := os.WriteFile(p.path(fmt.Sprintf("m%d", i)), content(i), 0o644)
		switch {
		case err == nil:
			acked = append(acked, i)
		case errors.Is(err, unix.EIO):
			failed = i
			if took := time.Since(start); took > flushTimeout+3*time.Second {
				t.Errorf("EIO after %v, flush timeout %v", took, flushTimeout)
			}
		default:
			t.Fatalf("write m%d: %v", i, err)
		}
	}
	if failed < 0 {
		t.Fatalf("40 files of 64 KiB fitted on replicas with 600 KiB free")
	}
	t.Logf("%d closes acknowledged, then EIO on m%d", len(acked), failed)
	for _, i := range acked {
		if got, err := os.ReadFile(p.path(fmt.Sprintf("m%d", i))); err != nil || !bytes.Equal(got, content(i)) {
			t.Fatalf("acknowledged m%d: %v, %d bytes", i, err, len(got))
		}
	}

	// While full, the replicas say so in their status (between attempts
	// to open the volume again).
	seen := ""
	for deadline := time.Now().Add(15 * time.Second); seen == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, r := range c.reps[:2] {
			if f := replicaStatus(r.addr, vol).GetFailed(); f != "" {
				seen = f
			}
		}
	}
	if !strings.Contains(seen, "no space left") {
		t.Errorf("status of the full replicas: failed %q, want the write error (no space left on device)", seen)
	}

	for _, dir := range small {
		if err := os.Remove(filepath.Join(dir, "fill")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := os.WriteFile(p.path("after"), []byte("after the disks had room again"), 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EIO) || time.Now().After(deadline) {
			t.Fatalf("close after space was freed: %v", err)
		}
	}
	for i, r := range c.reps[:2] {
		if !r.running() {
			t.Fatalf("replica %d exited: %v", i+1, r.err)
		}
		if out := r.log.String(); !strings.Contains(out, "replica storage works again") {
			t.Errorf("replica %d did not say its storage works again:\n%s", i+1, lastLines(out, 15))
		}
	}
	// The file that got EIO was kept by the primary and reaches the
	// replicas: all three converge.
	if waitConverged(t, c, vol) == 0 {
		t.FailNow() // not after space was freed
	}
	if got, err := os.ReadFile(p.path(fmt.Sprintf("m%d", failed))); err != nil || !bytes.Equal(got, content(failed)) {
		t.Fatalf("the file that got EIO: %v, %d bytes", err, len(got))
	}
	// A new primary recovers every file from the replicas.
	p.stop(t)
	p2 := c.startPrimary(vol, "p2")
	for _, i := range append(acked, failed) {
		if got, err := os.ReadFile(p2.path(fmt.Sprintf("m%d", i))); err != nil || !bytes.Equal(got, content(i)) {
			t.Errorf("after recovery, m%d: %v, %d bytes", i, err, len(got))
		}
	}
}
