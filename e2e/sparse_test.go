package e2e

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var flagSparseOffset = flag.Int64("sparse.offset", 2<<30, "offset of the byte TestSparseFileReplicated writes")

// sparseBound is what one byte written far into a file may cost anywhere:
// a page where it lands, a chunk on a replica, record and message framing.
const sparseBound = 1 << 20

// TestSparseFileReplicated (issue 9, finding 3, pjdfstest open/25.t): one
// byte written at 2 GiB of a file on a replicated mount costs what was
// written, not the file's size. The close returns promptly; each replica
// receives, stores on disk and holds in memory a small multiple of a
// page; the primary's memory does not grow by the size; and a new primary
// recovered from the replicas serves the same content with the hole still
// a hole (its statfs counts the page, not 2 GiB). Before extents the data
// record carried 2 GiB of zeros to every replica.
func TestSparseFileReplicated(t *testing.T) {
	requireCluster(t)
	off := *flagSparseOffset
	c := newCluster(t, 3)
	const vol = "sparse"
	p := c.startPrimary(vol, "p1")
	if err := os.WriteFile(p.path("warm"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, vol)
	before := c.usage(t, vol)
	primaryRSS := rssOf(t, p.cmd.Process.Pid)

	f, err := os.OpenFile(p.path("big"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), off); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	took := time.Since(start)
	if waitConverged(t, c, vol) == 0 {
		t.FailNow()
	}
	after := c.usage(t, vol)
	t.Logf("close took %v; primary RSS %d → %d KiB", took, primaryRSS>>10, rssOf(t, p.cmd.Process.Pid)>>10)
	if took > 10*time.Second {
		t.Errorf("close of a file with one byte at %d took %v", off, took)
	}
	if grew := rssOf(t, p.cmd.Process.Pid) - primaryRSS; grew > 64<<20 {
		t.Errorf("primary RSS grew by %d MiB", grew>>20)
	}
	for i := range c.reps {
		b, a := before[i], after[i]
		t.Logf("replica %d: received %d bytes, file +%d bytes, stores %d bytes, RSS %d → %d KiB",
			i+1, a.received-b.received, a.disk-b.disk, a.stored, b.rss>>10, a.rss>>10)
		if a.received-b.received > sparseBound || a.disk-b.disk > sparseBound || a.stored > sparseBound {
			t.Errorf("replica %d: received %d, disk +%d, stores %d bytes for one byte written", i+1, a.received-b.received, a.disk-b.disk, a.stored)
		}
		if a.rss-b.rss > 64<<20 {
			t.Errorf("replica %d: RSS grew by %d MiB", i+1, (a.rss-b.rss)>>20)
		}
	}
	p.stop(t)

	// Recovery: the new primary's volume has the byte, the size and the hole.
	p2 := c.startPrimary(vol, "p2")
	defer p2.stop(t)
	g, err := os.Open(p2.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fi, err := g.Stat()
	if err != nil || fi.Size() != off+1 {
		t.Fatalf("recovered size %v (%v), want %d", fi.Size(), err, off+1)
	}
	got := make([]byte, 2)
	if _, err := g.ReadAt(got[:1], off); err != nil || got[0] != 'x' {
		t.Fatalf("recovered byte at %d: %q %v", off, got[:1], err)
	}
	if _, err := g.ReadAt(got, off/2); err != nil || !bytes.Equal(got, []byte{0, 0}) {
		t.Fatalf("recovered hole at %d reads %q %v", off/2, got, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(p2.dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if used := (sfs.Blocks - sfs.Bfree) * uint64(sfs.Bsize); used > sparseBound {
		t.Fatalf("the recovered volume uses %d bytes: the hole was filled", used)
	}
}

// replicaUsage is what one replica process costs for a volume.
type replicaUsage struct {
	received uint64 // bytes of Ship and Install messages (Status RPC)
	stored   uint64 // file content bytes stored (Status RPC)
	disk     int64  // bytes of its data directory's files
	rss      int64  // resident memory of the process
}

func (c *cluster) usage(t *testing.T, vol string) []replicaUsage {
	t.Helper()
	out := make([]replicaUsage, len(c.reps))
	for i, r := range c.reps {
		st := replicaStatus(r.addr, vol)
		if st == nil {
			t.Fatalf("replica %d: no status", i+1)
		}
		out[i] = replicaUsage{received: st.ReceivedBytes, stored: st.DataBytes, disk: dirBytes(t, r.data), rss: rssOf(t, r.cmd.Process.Pid)}
	}
	return out
}

// dirBytes adds up the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rssOf reads a process's resident memory (VmRSS) in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
