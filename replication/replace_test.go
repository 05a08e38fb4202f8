package replication

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReplicaReplacedEmpty: a replica whose disk is lost comes back empty
// on the same address while the primary serves (docs/operations.md,
// "Replace a dead replica"). Its link, granted the term before, meets
// NotFound at the handshake, acquires the term again (which creates the
// volume there) and installs a snapshot: the new replica catches up with
// no restart of the primary.
func TestReplicaReplacedEmpty(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig("v"))
	_, lsn := m.writeFile(RootIno, "before", []byte("written before the loss"))
	mustWait(t, p, lsn, 20*time.Second)
	c.waitForLSN("v", lsn)

	c.kill(2)
	files, _ := filepath.Glob(filepath.Join(c.reps[2].dir, "*"))
	for _, f := range files {
		if err := os.RemoveAll(f); err != nil {
			t.Fatal(err)
		}
	}
	_, lsn = m.writeFile(RootIno, "during", []byte("written while it was gone"))
	mustWait(t, p, lsn, 20*time.Second)
	c.restart(2)
	_, lsn = m.writeFile(RootIno, "after", []byte("written after it came back"))
	mustWait(t, p, lsn, 20*time.Second)
	c.waitForLSN("v", lsn, 2)
	snap := c.snapshot(2, "v")
	for _, name := range []string{"/before", "/during", "/after"} {
		if _, ok := find(snap, name); !ok {
			t.Errorf("the new replica lacks %s", name)
		}
	}
}
