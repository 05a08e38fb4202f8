package fsactor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"golang.org/x/sys/unix"
)

// TestInvariantsCatchCorruption breaks the state on purpose, one way at a
// time: CheckInvariants must panic for each.
func TestInvariantsCatchCorruption(t *testing.T) {
	breakers := map[string]func(st *State, tr tree){
		"nlink":        func(st *State, tr tree) { st.inodes[tr.f].attr.Nlink++ },
		"dir nlink":    func(st *State, tr tree) { st.inodes[tr.d].attr.Nlink = 5 },
		"parent":       func(st *State, tr tree) { st.inodes[tr.d].dir.parent = tr.e },
		"dangling":     func(st *State, tr tree) { st.inodes[tr.e].dir.add("x", 999, false) },
		"name map":     func(st *State, tr tree) { st.inodes[rootIno].dir.names["f"] = 0 },
		"cookie order": func(st *State, tr tree) { st.inodes[rootIno].dir.ents[0].cookie = 99 },
		"subdirs":      func(st *State, tr tree) { st.inodes[rootIno].dir.subdirs++ },
		"unfreed":      func(st *State, tr tree) { st.inodes[tr.gone].nlookup = 0 },
		"handles":      func(st *State, tr tree) { st.inodes[tr.f].openHandles++ },
		"handle inode": func(st *State, tr tree) { st.handles[777] = handle{ino: 999}; st.nextHandle = 1000 },
		"used":         func(st *State, tr tree) { st.used++ },
		"size":         func(st *State, tr tree) { st.inodes[tr.f].attr.Size-- }, // a byte past the size
		"slot shared":  func(st *State, tr tree) { st.inodes[tr.df].slot = st.inodes[tr.f].slot },
		"symlink":      func(st *State, tr tree) { st.inodes[tr.l].target = "longer" },
		"dirty fifo":   func(st *State, tr tree) { st.inodes[tr.p].dirty = true },
		"dirty ranges unsorted": func(st *State, tr tree) {
			st.inodes[tr.f].dirty, st.inodes[tr.f].dirtyRanges = true, []Extent{{Off: 2, Len: 1}, {Off: 0, Len: 1}}
		},
		"dirty range past the size": func(st *State, tr tree) {
			in := st.inodes[tr.f]
			in.dirty, in.dirtyRanges = true, []Extent{{Off: 0, Len: in.attr.Size + 1}}
		},
		"dirty ranges of a clean file": func(st *State, tr tree) { st.inodes[tr.f].dirtyRanges = []Extent{{Off: 0, Len: 1}} },
		"next ino":                     func(st *State, tr tree) { st.nextIno = 2 },
		"xattr order":                  func(st *State, tr tree) { st.inodes[tr.f].xattrs = []xattr{{name: "b"}, {name: "a"}} },
		"root kind":                    func(st *State, tr tree) { st.inodes[rootIno].dir = nil },
		"spare": func(st *State, tr tree) {
			fd, _ := unix.Dup(st.inodes[tr.f].slot.a.fd)
			st.spare = append(st.spare, fd)
		},
		"tombstones":    func(st *State, tr tree) { st.inodes[rootIno].dir.tombs++ },
		"type and part": func(st *State, tr tree) { st.inodes[tr.f].attr.Mode = 0o040644 },
	}
	for name, breakIt := range breakers {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tr := h.tree()
			ino, fh := h.create(rootIno, "open")
			h.write(ino, fh, 0, "x")
			breakIt(h.st, tr)
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), "broken invariant") {
					t.Fatalf("no panic: %v", r)
				}
			}()
			h.st.CheckInvariants()
		})
	}
}

// "effects" is checked too: records not applied yet must end at the head.
func TestInvariantsCheckEffects(t *testing.T) {
	h := newHarness(t, Config{})
	h.mkfile(rootIno, "f", "x")
	h.st.eff.Records = append(h.st.eff.Records, &Record{LSN: h.st.lsn + 2})
	defer h.st.eff.Reset()
	if err := h.st.invariantsErr(); err == nil || !strings.Contains(err.Error(), "effects") {
		t.Fatalf("a record past the head: %v", err)
	}
}

// BenchmarkCheckInvariants is the cost of one whole check of a volume of
// n files with content: what -tags invariants would add to every step if
// it checked everything every time (fsactor/doc.go, "Invariants").
//
//	go test ./fsactor -run '^$' -bench CheckInvariants
func BenchmarkCheckInvariants(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st, err := NewState(Config{DiscardContent: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			for i := range n {
				op := &fuseops.CreateFileOp{Parent: rootIno, Name: fmt.Sprintf("m%05d", i), Mode: 0o600}
				st.Handle(op, Caller{}, t0)
				st.Handle(&fuseops.WriteFileOp{Inode: op.Entry.Child, Handle: op.Handle, Data: []byte("x")}, Caller{}, t0)
				st.Handle(&fuseops.ReleaseFileHandleOp{Handle: op.Handle}, Caller{}, t0).Reset()
			}
			b.ResetTimer()
			for range b.N {
				if err := st.invariantsErr(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
