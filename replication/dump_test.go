package replication

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestDumpRestore: a dump written from one replica reads back whole; a
// restore of it to the same replicas, after more writes, takes a new term
// and rolls the volume back: the next primary recovers the dumped state,
// whose position (the restore's term) is ahead of the later writes.
func TestDumpRestore(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig("v"))
	_, lsn := m.writeFile(RootIno, "kept", []byte("in the dump"))
	mustWait(t, p, lsn, 20*time.Second)
	c.waitForLSN("v", lsn, 0)

	var buf bytes.Buffer
	info, err := WriteDump(context.Background(), c.rawClient(0), "v", &buf)
	if err != nil || info.Volume != "v" || info.LSN != lsn || info.Inodes != 2 {
		t.Fatalf("dump: %+v, %v; want volume v at lsn %d with 2 inodes", info, err, lsn)
	}
	_, lsn = m.writeFile(RootIno, "later", []byte("after the dump"))
	mustWait(t, p, lsn, 20*time.Second)
	_ = p.Close()

	snap, rinfo, err := ReadDump(&buf)
	if err != nil || rinfo != info {
		t.Fatalf("read dump: %+v, %v; want %+v", rinfo, err, info)
	}
	term, err := Restore(context.Background(), c.primaryConfig("v"), snap)
	if err != nil || term < 2 {
		t.Fatalf("restore: term %d, %v", term, err)
	}
	p2, got, err := OpenPrimary(context.Background(), c.primaryConfig("v"))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, ok := find(got, "/kept"); !ok {
		t.Error("the restored volume lacks /kept")
	}
	if _, ok := find(got, "/later"); ok {
		t.Error("the restored volume has /later, written after the dump")
	}
}
