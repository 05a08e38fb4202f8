package replication

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/buntdb"
	"go.uber.org/zap"
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
	commitRecs(t, st, createRec(1, 1, 4, 1, "a"))
	before, mBefore, _ := st.readSnapshot()
	start := fileSize(t, path)
	content := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: the batch spans pages
	commitRecs(t, st, &Record{Term: 1, LSN: 2, Op: OpData, Ino: 4, Attr: fileAttr(len(content)), Data: []byte(content)})
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
	writeAt(t, path, end, []byte("garbage"))
	requireMovedAside(t, path)
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

// TestDamageMidFileMovedAside: a log entry that fails its checksum, or a
// command whose length changed, with whole entries after it is damage,
// not the end of an interrupted write (buntdb alone would load the first
// and cut the file at the second, losing the batches after it): the file
// is moved aside rather than served.
func TestDamageMidFileMovedAside(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(b []byte, start, end int64) // the entry at [start, end)
	}{
		{"a byte of the entry", func(b []byte, start, end int64) { b[end-10] ^= 1 }},
		{"a length", func(b []byte, start, end int64) {
			i := start + int64(bytes.LastIndex(b[start:end-10], []byte("\r\n$"))) + 3 // the value's length
			b[i]++
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "v.db")
			st := installBase(t, path)
			start := fileSize(t, path)
			commitRecs(t, st, createRec(1, 1, 4, 1, "a"))
			end := fileSize(t, path)
			commitRecs(t, st, createRec(1, 2, 5, 1, "b"))
			st.close()
			whole, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c.change(whole, start, end)
			if err := os.WriteFile(path, whole, 0o600); err != nil {
				t.Fatal(err)
			}
			requireMovedAside(t, path)
		})
	}
}

// requireMovedAside opens the store at path and fails unless the file was
// moved aside and the volume starts empty.
func requireMovedAside(t *testing.T, path string) {
	t.Helper()
	st := openTestStore(t, path)
	defer st.close()
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 || st.meta.Initialized {
		t.Fatalf("damaged file: moved aside %v, volume initialized %v", aside, st.meta.Initialized)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
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

// FuzzLogCheck feeds arbitrary file contents to the check a replica runs
// before buntdb reads its file: it must never panic, and a file it cut or
// passed must pass a second time unchanged, and buntdb must then read it
// or refuse it as invalid (which moves it aside).
func FuzzLogCheck(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.db")
	st := installBase(f, seed)
	commitRecs(f, st, &Record{Term: 1, LSN: 1, Op: OpCreate, Ino: 4, Parent: 1, Name: "n", Attr: fileAttr(0)})
	st.close()
	whole, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(whole)
	f.Add(whole[:len(whole)-7])
	f.Add(append(append([]byte(nil), whole...), 0, 0, 0, '*', '3'))
	f.Add([]byte("*3\r\n$3\r\nset\r\n$4\r\nl:01\r\n$3\r\n\x02ab\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "f.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		damaged, err := cutTornEnd(path, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		once, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		again, err := cutTornEnd(path, zap.NewNop())
		if err != nil || again != damaged {
			t.Fatalf("second check: damaged %v then %v (%v)", damaged, again, err)
		}
		if twice, _ := os.ReadFile(path); !bytes.Equal(once, twice) {
			t.Fatalf("second check changed the file: %d bytes, then %d", len(once), len(twice))
		}
		if !damaged { // buntdb reads it, or refuses a command it does not know (moved aside)
			db, err := buntdb.Open(path)
			if err == nil {
				db.Close()
			} else if !errors.Is(err, buntdb.ErrInvalid) {
				t.Fatalf("passed, but buntdb says: %v", err)
			}
		}
	})
}
