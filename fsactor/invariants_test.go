package fsactor

import (
	"strings"
	"testing"

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
		"size":         func(st *State, tr tree) { st.inodes[tr.f].attr.Size++ },
		"symlink":      func(st *State, tr tree) { st.inodes[tr.l].target = "longer" },
		"dirty fifo":   func(st *State, tr tree) { st.inodes[tr.p].dirty = true },
		"next ino":     func(st *State, tr tree) { st.nextIno = 2 },
		"xattr order":  func(st *State, tr tree) { st.inodes[tr.f].xattrs = []xattr{{name: "b"}, {name: "a"}} },
		"root kind":    func(st *State, tr tree) { st.inodes[rootIno].dir = nil },
		"spare": func(st *State, tr tree) {
			fd, _ := unix.Dup(st.inodes[tr.f].fd)
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
