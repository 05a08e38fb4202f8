package replication

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestTornBatchDropped: what a power cut can leave of an appended batch on
// a file system that may show zeros where the data never reached the disk
// — any part of it, zeros in the holes — is dropped whole at the next open,
// whether the hole hits the command's header, the middle of the entry
// (only its checksum tells) or its last bytes; the batches before it
// stay, and the store takes new batches after.
func TestTornBatchDropped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.db")
	st := installBase(t, path)
	v, m := stage(t, st, createRec(1, 1, 4, 1, "a"))
	if err := st.commit(v, m); err != nil {
		t.Fatal(err)
	}
	before, mBefore, _ := st.readSnapshot()
	start := fileSize(t, path)
	content := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: the batch spans pages
	v, m = stage(t, st, &Record{Term: 1, LSN: 2, Op: OpData, Ino: 4, Attr: fileAttr(len(content)), Data: []byte(content)})
	if err := st.commit(v, m); err != nil {
		t.Fatal(err)
	}
	after, mAfter, _ := st.readSnapshot()
	end := fileSize(t, path)
	st.close()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := (start + end) / 2
	for _, c := range []struct {
		name     string
		from, to int64 // zeroed
		whole    bool  // the batch survives
	}{
		{"no hole", 0, 0, true},
		{"header", start, start + 8, false},
		{"first page", start, start + 4096, false},
		{"page in the middle", mid &^ 4095, mid&^4095 + 4096, false},
		{"one byte of content", mid, mid + 1, false},
		{"last bytes", end - 2, end, false},
		{"the whole batch", start, end, false},
	} {
		b := append([]byte(nil), whole...)
		clear(b[c.from:c.to])
		cp := filepath.Join(dir, "torn.db")
		if err := os.WriteFile(cp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st := openTestStore(t, cp)
		got, gotM, err := st.readSnapshot()
		want, wantM := before, mBefore
		if c.whole {
			want, wantM = after, mAfter
		}
		if err != nil || gotM != wantM || !reflect.DeepEqual(got, want) {
			st.close()
			t.Fatalf("%s: lsn %d, want %d (%v)", c.name, gotM.LSN, wantM.LSN, err)
		}
		v, m := stage(t, st, createRec(1, wantM.LSN+1, 20, 1, "next"))
		if err := st.commit(v, m); err != nil {
			t.Fatalf("%s: commit after the open: %v", c.name, err)
		}
		st.close()
		if aside, _ := filepath.Glob(cp + ".corrupt-*"); len(aside) != 0 {
			t.Fatalf("%s: a torn batch made the file count as corrupt", c.name)
		}
	}
}

// TestDamageMovedAside: bytes past the last whole command that an
// appended batch cannot leave (no command starts with them) are damage,
// not a torn batch: the file is moved aside, not cut.
func TestDamageMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	end := fileSize(t, path)
	st.close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage"), end); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st = openTestStore(t, path)
	defer st.close()
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 || st.meta.Initialized {
		t.Fatalf("damaged file: moved aside %v, volume initialized %v", aside, st.meta.Initialized)
	}
}

// TestSealedEntries: an entry's checksum catches a changed byte, and an
// entry an older version wrote (no seal) still decodes.
func TestSealedEntries(t *testing.T) {
	st := openTestStore(t, "")
	if err := st.install(baseSnapshot(), meta{LastTerm: 1, NextIno: 4, Initialized: true}); err != nil {
		t.Fatal(err)
	}
	v, _ := stage(t, st, createRec(1, 1, 4, 1, "a"))
	entry := v.encodeChanges()
	want, err := decodeChanges(entry)
	if err != nil || len(want) == 0 {
		t.Fatalf("decode: %v, %d changes", err, len(want))
	}
	for i := 1; i < len(entry); i++ {
		b := []byte(entry)
		b[i] ^= 0x20
		if _, err := decodeChanges(string(b)); err == nil {
			t.Fatalf("byte %d changed: decoded without an error", i)
		}
	}
	old, err := decodeChanges(entry[sealLen:])
	if err != nil || !reflect.DeepEqual(old, want) {
		t.Fatalf("unsealed entry: %v", err)
	}
}

// TestBadEntryFarFromTheEndMovedAside: a log entry whose checksum fails
// with more after it than any batch is damage (buntdb alone would load
// it): the file is moved aside rather than served.
func TestBadEntryFarFromTheEndMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	v, m := stage(t, st, createRec(1, 1, 4, 1, "a"))
	if err := st.commit(v, m); err != nil {
		t.Fatal(err)
	}
	bad := fileSize(t, path) - 10 // inside the sealed entry just written
	content := strings.Repeat("z", 1<<20)
	for i := uint64(2); int64(i) < 2+maxTorn>>20+1; i++ {
		v, m := stage(t, st, &Record{Term: 1, LSN: i, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Data: []byte(content)})
		if err := st.commit(v, m); err != nil {
			t.Fatal(err)
		}
	}
	st.close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], bad); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b[:], bad); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st = openTestStore(t, path)
	defer st.close()
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 || st.meta.Initialized {
		t.Fatalf("damaged entry: moved aside %v, volume initialized %v", aside, st.meta.Initialized)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
