package fsactor

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
)

// flatContent is a file's bytes from its extents and data (nil extents:
// data from offset 0), holes as zeros.
func flatContent(exts []Extent, data []byte, size uint64) []byte {
	out := make([]byte, size)
	placeExtents(out, exts, data)
	return out
}

// placeExtents copies data into out at exts, one extent after another
// (nil extents: data at offset 0).
func placeExtents(out []byte, exts []Extent, data []byte) {
	if exts == nil {
		copy(out, data)
		return
	}
	for _, x := range exts {
		copy(out[x.Off:x.Off+x.Len], data[:x.Len])
		data = data[x.Len:]
	}
}

// TestRestoreBatchedWrites: files of every arena class, interleaved, some
// sparse (holes shorter and longer than a page), some in a memfd of their
// own, restore with the batched writes (restore_write.go) to exactly
// their bytes, with zeros past each size in its slot.
func TestRestoreBatchedWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	const files = 3000
	root := SnapInode{Ino: rootIno, Attr: Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2}}
	snap := &Snapshot{LSN: 7, NextIno: files + 2, Inodes: []SnapInode{root}}
	want := map[uint64][]byte{}
	for i := range files {
		ino := uint64(i + 2)
		size := uint64(1 + rng.IntN(int(arenaMax)+arenaMax/4)) // a fifth above arenaMax: memfd files
		if i%7 == 0 {
			size = uint64(slotSizes[rng.IntN(len(slotSizes))]) // exactly a class: runs with no gap
		}
		si := SnapInode{Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o600, Nlink: 1, Size: size}}
		switch {
		case i%5 == 0 && size > 2*pageSize+20: // sparse: a short hole, then one longer than a page
			si.Extents = []Extent{{Off: 3, Len: 10}, {Off: 100, Len: 7}, {Off: 2*pageSize + 1, Len: size - 2*pageSize - 1}}
		case i%11 == 0:
			size = 0
			si.Attr.Size = 0
		}
		n := size
		if si.Extents != nil {
			n = 0
			for _, x := range si.Extents {
				n += x.Len
			}
		}
		si.Data = make([]byte, n)
		for j := range si.Data {
			si.Data[j] = byte(1 + rng.IntN(255))
		}
		want[ino] = flatContent(si.Extents, si.Data, size)
		snap.Inodes = append(snap.Inodes, si)
		snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, SnapDirent{Name: fmt.Sprintf("f%d", i), Ino: ino})
	}
	st, err := NewState(Config{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.invariantsErr(); err != nil { // zeros past every size, arenas' counts
		t.Fatal(err)
	}
	for ino, w := range want {
		in := st.inodes[ino]
		exts, data, err := st.readContent(in)
		if err != nil {
			t.Fatalf("inode %d: %v", ino, err)
		}
		if got := flatContent(exts, data, in.attr.Size); !bytes.Equal(got, w) {
			t.Fatalf("inode %d (%d bytes): restored bytes differ", ino, len(w))
		}
	}
}
