package replication

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"github.com/tidwall/buntdb"
	"go.uber.org/zap"
)

func openTestStore(t testing.TB, path string) *volStore {
	t.Helper()
	st, err := openVolStore(path, 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// installBase puts baseSnapshot in a fresh store at path.
func installBase(t testing.TB, path string) *volStore {
	t.Helper()
	st := openTestStore(t, path)
	if err := st.install(baseSnapshot(), meta{LastTerm: 1, NextIno: 4, Initialized: true}); err != nil {
		t.Fatal(err)
	}
	return st
}

// stage applies records to a view of st and returns it with the new meta.
func stage(t testing.TB, st *volStore, recs ...*Record) (*view, meta) {
	t.Helper()
	v, done := st.view()
	defer done()
	m := st.meta
	ap := &applier{v: v, lim: Limits{}.withDefaults(), meta: &m}
	for _, r := range recs {
		if err := ap.apply(r); err != nil {
			t.Fatal(err)
		}
		m.LSN, m.LastTerm = r.LSN, r.Term
	}
	return v, m
}

// commitRecs stages recs and commits them as one batch.
func commitRecs(t testing.TB, st *volStore, recs ...*Record) meta {
	t.Helper()
	v, m := stage(t, st, recs...)
	if err := st.commit(v, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOldRedoReplayed: a file an older version left with a batch's redo
// written but not its changes (it stopped between its two writes) opens
// with the batch applied, and the next compaction drops the redo.
func TestOldRedoReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	v, m := stage(t, st, createRec(1, 1, 4, 1, "a"), &Record{Term: 1, LSN: 2, Op: OpData, Ino: 4, Attr: fileAttr(3), Data: []byte("abc")})
	v.set(keyMeta, m.encode())
	redo := v.encodeChanges()
	if err := st.db.Update(func(tx *buntdb.Tx) error { _, _, err := tx.Set(keyRedo, redo, nil); return err }); err != nil {
		t.Fatal(err)
	}
	st.close() // crash: the changes themselves were never written

	st = openTestStore(t, path)
	defer st.close()
	if st.meta.LSN != 2 {
		t.Fatalf("lsn %d after replay, want 2", st.meta.LSN)
	}
	snap, _, err := st.readSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := find(snap, "a"); !ok || string(in.Data) != "abc" {
		t.Fatalf("replayed file: %+v", in)
	}
	if err := st.compact(); err != nil {
		t.Fatal(err)
	}
	if err := st.db.View(func(tx *buntdb.Tx) error { _, err := tx.Get(keyRedo); return err }); err != buntdb.ErrNotFound {
		t.Fatalf("redo left behind after a compaction: %v", err)
	}
	if got, _, _ := st.readSnapshot(); !reflect.DeepEqual(got, snap) {
		t.Fatal("compaction changed the volume")
	}
}

// TestBatchWholeOrNotAtAll: a batch is one command in the file, so a file
// cut anywhere inside it (a kill inside write(2), a power cut before the
// fsync) opens as the volume before the batch, never as part of it.
func TestBatchWholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.db")
	st := installBase(t, path)
	before, mBefore, _ := st.readSnapshot()
	fi, _ := os.Stat(path)
	start := fi.Size()
	v, m := stage(t, st, createRec(1, 1, 4, 1, "a"), createRec(1, 2, 5, 1, "b"),
		&Record{Term: 1, LSN: 3, Op: OpData, Ino: 4, Attr: fileAttr(5000), Data: []byte(strings.Repeat("q", 5000))})
	if err := st.commit(v, m); err != nil {
		t.Fatal(err)
	}
	after, _, _ := st.readSnapshot()
	st.close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := int64(len(whole))
	for _, cut := range []int64{start + 1, start + 20, start + 40, (start + end) / 2, end - 40, end - 1, end} {
		cp := filepath.Join(dir, "cut.db")
		if err := os.WriteFile(cp, whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		st := openTestStore(t, cp)
		got, mGot, err := st.readSnapshot()
		st.close()
		if err != nil {
			t.Fatalf("cut at %d of %d..%d: %v", cut, start, end, err)
		}
		want, wantM := before, mBefore
		if cut == end {
			want, wantM = after, m
		}
		if mGot != wantM || !reflect.DeepEqual(got, want) {
			t.Fatalf("cut at %d of %d..%d: lsn %d, want the volume at lsn %d whole", cut, start, end, mGot.LSN, wantM.LSN)
		}
	}
}

// TestTornTailIgnored: a command cut short at the end of the file (a kill
// inside write(2)) is dropped; everything committed before stays.
func TestTornTailIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	commitRecs(t, st, createRec(1, 1, 4, 1, "a"))
	want, _, _ := st.readSnapshot()
	st.close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("*3\r\n$3\r\nset\r\n$18\r\ni:00000000000000")
	f.Close()
	st = openTestStore(t, path)
	defer st.close()
	got, _, _ := st.readSnapshot()
	if st.meta.LSN != 1 || !reflect.DeepEqual(want, got) {
		t.Fatalf("after a torn tail: lsn %d", st.meta.LSN)
	}
}

// TestCorruptDatabaseMovedAside: a file buntdb cannot parse is kept for
// inspection and the volume starts empty; the replica server still knows
// its accepted term.
func TestCorruptDatabaseMovedAside(t *testing.T) {
	dir := t.TempDir()
	srv, err := NewReplicaServer(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Acquire(t.Context(), &pb.AcquireRequest{Volume: vol, Term: 7, NodeId: "raw"})
	if err != nil || !resp.Granted {
		t.Fatal(resp, err)
	}
	srv.Close()
	if err := os.WriteFile(filepath.Join(dir, vol+".db"), []byte("garbage that is no buntdb file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err = NewReplicaServer(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err = srv.Acquire(t.Context(), &pb.AcquireRequest{Volume: vol, Term: 7, NodeId: "other"})
	if err != nil || resp.Granted || resp.AcceptedTerm != 7 || resp.Initialized {
		t.Fatalf("after corruption: %v %v", resp, err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, vol+".db.corrupt-*"))
	if len(aside) != 1 {
		t.Fatalf("corrupt file not kept: %v", aside)
	}
}

// TestShrinkKeepsState: the store rewrites its file once it doubled, and
// what it holds survives the rewrite and a reopen.
func TestShrinkKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	st.shrinkAt, st.shrinkMin = 64<<10, 64<<10
	for i := uint64(1); i <= 40; i++ {
		content := strings.Repeat(string(rune('a'+i%26)), 8<<10) // a chunk that did not change is not written again
		commitRecs(t, st, &Record{Term: 1, LSN: i, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Data: []byte(content)})
		if err := st.maybeShrink(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 128<<10 {
		t.Fatalf("file of %d bytes after 320 KiB of rewrites: no shrink", fi.Size())
	}
	if left, _ := filepath.Glob(path + ".*"); len(left) != 0 {
		t.Fatalf("compaction left %v", left)
	}
	if st.compactions == 0 {
		t.Fatal("no compaction counted")
	}
	want, _, _ := st.readSnapshot()
	st.close()
	st = openTestStore(t, path)
	defer st.close()
	got, m, _ := st.readSnapshot()
	if m.LSN != 40 || !reflect.DeepEqual(want, got) {
		t.Fatalf("state changed by the shrink (lsn %d)", m.LSN)
	}
}

// TestEachInodeMatchesSnapshot: the inodes Fetch streams one by one are
// the snapshot readSnapshot assembles whole: directories with entries,
// files with content and xattrs, symlinks, in inode order.
func TestEachInodeMatchesSnapshot(t *testing.T) {
	st := installBase(t, filepath.Join(t.TempDir(), "v.db"))
	defer st.close()
	link := &Record{Term: 1, LSN: 2, Op: OpCreate, Ino: 5, Parent: 2, Name: "ln",
		Attr: Attr{Mode: modeLnk | 0o777, Nlink: 1, Size: 6, Ctime: testTime}, Target: "target"}
	big := bytes.Repeat([]byte("0123456789"), 20<<10) // 200 KiB: four chunks, then a hole and one more
	data := &Record{Term: 1, LSN: 3, Op: OpData, Ino: 3, Attr: fileAttr(1 << 20), Data: append(big, 'z'),
		Extents: []Extent{{Off: 0, Len: uint64(len(big))}, {Off: 1<<20 - 1, Len: 1}}}
	commitRecs(t, st, createRec(1, 1, 4, 2, "in-d"), link, data)
	want, _, err := st.readSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var got []SnapInode
	if err := st.eachInode(func(in *SnapInode) error { got = append(got, *in); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want.Inodes) {
		t.Fatalf("streamed inodes differ from the snapshot:\n got %+v\nwant %+v", got, want.Inodes)
	}
	if len(got) != 5 {
		t.Fatalf("%d inodes, want 5", len(got))
	}
	fz, err := st.freeze()
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	if err := fz.eachInode(func(in *SnapInode) error { got = append(got, *in); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want.Inodes) {
		t.Fatalf("frozen inodes differ from the snapshot:\n got %+v\nwant %+v", got, want.Inodes)
	}
}

// TestFailedCommitCutBack: after a commit failed (its fsync, or its
// write), the next open cuts the file back to its size at the last good
// fsync, so a batch that may exist only in the page cache is not
// reported as stored; a marker that is not a size stops the open.
func TestFailedCommitCutBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	for i := uint64(1); i <= 2; i++ {
		commitRecs(t, st, &Record{Term: 1, LSN: i, Op: OpData, Ino: 3, Attr: fileAttr(1), Data: []byte{byte('a' + i)}})
	}
	want, _, _ := st.readSnapshot()
	// Batch 3 is written as commit writes it, and then its fsync "fails".
	v, m := stage(t, st, &Record{Term: 1, LSN: 3, Op: OpData, Ino: 3, Attr: fileAttr(1), Data: []byte("z")})
	v.set(keyMeta, m.encode())
	entry := v.encodeChanges()
	if err := st.db.Update(func(tx *buntdb.Tx) error { _, _, err := tx.Set(logKey(3), entry, nil); return err }); err != nil {
		t.Fatal(err)
	}
	st.markFailed()
	st.close()
	if _, err := os.Stat(path + failedSuffix); err != nil {
		t.Fatalf("no marker after a failed commit: %v", err)
	}

	st = openTestStore(t, path)
	got, gm, err := st.readSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if gm.LSN != 2 || !reflect.DeepEqual(want, got) {
		t.Fatalf("after the cut: lsn %d (want 2, the last batch fsynced), state equal: %v", gm.LSN, reflect.DeepEqual(want, got))
	}
	if _, err := os.Stat(path + failedSuffix); !os.IsNotExist(err) {
		t.Fatalf("marker left after the cut: %v", err)
	}
	st.close()

	if err := os.WriteFile(path+failedSuffix, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openVolStore(path, 0, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "not a file size") {
		t.Fatalf("open with a garbled marker: %v, want an error naming it", err)
	}
}

// TestInstallLarge: a snapshot many times larger than the new file's write
// buffer is installed whole — the same volume after a reopen — and install
// gives up the snapshot's contents, which it no longer needs.
func TestInstallLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := openTestStore(t, path)
	snap := &Snapshot{LSN: 9, NextIno: 40, Inodes: []SnapInode{{Ino: 1, Attr: dirAttr()}}}
	for i := uint64(0); i < 30; i++ {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, 1<<20)
		snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, SnapDirent{Name: fmt.Sprintf("f%02d", i), Ino: 10 + i})
		snap.Inodes = append(snap.Inodes, SnapInode{Ino: 10 + i, Attr: fileAttr(len(data)), Data: data})
	}
	if snapDataBytes(snap) < 3*aofBuffer {
		t.Fatalf("%d bytes: not several buffers", snapDataBytes(snap))
	}
	want := *snap
	want.Inodes = slices.Clone(snap.Inodes)
	m := meta{LastTerm: 2, LSN: 9, NextIno: 40, Initialized: true}
	if err := st.install(snap, m); err != nil {
		t.Fatal(err)
	}
	for _, in := range snap.Inodes {
		if in.Data != nil {
			t.Fatalf("inode %d: install kept the snapshot's content", in.Ino)
		}
	}
	st.close()
	st = openTestStore(t, path)
	defer st.close()
	got, gm, err := st.readSnapshot()
	if err != nil || gm != m || !reflect.DeepEqual(got.Inodes, want.Inodes) {
		t.Fatalf("after a reopen: meta %+v, equal %v, %v", gm, reflect.DeepEqual(got.Inodes, want.Inodes), err)
	}
}
