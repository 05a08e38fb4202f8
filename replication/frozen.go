package replication

import (
	"fmt"
	"sort"
	"unsafe"

	"github.com/tidwall/buntdb"
)

// frozenVolume is a volume's keys and values as they were at one moment,
// read without holding the volume: a Fetch sends it while the volume goes
// on committing batches. It holds the buntdb entries' strings, not copies
// of them (Go strings do not change), so freezing a volume costs a string
// header per key; what a later batch replaces stays alive, and shared,
// until the fetch ends. Before it, a Fetch held the volume's lock while
// it sent the whole volume, and a follower reading its snapshot slowly
// stopped that replica's commits for as long (docs/replication-protocol.md,
// "Watch: followers").
//
// The keys stay in key order, which is kind, then inode, then name or
// chunk index (keys.go): eachInode walks the i: keys and, beside them, one
// cursor per other kind, with no index per inode. A map from inode to its
// keys cost 1.2 s of a 1,000,000-file fetch's 9.5 s of CPU (issue 13).
type frozenVolume struct {
	pairs []frozenKV // every key but m: and u:, in key order
}

type frozenKV struct{ k, v string }

// frozenKinds are the kinds of keys an inode has besides its i: key, in
// the order eachInode reads them (key order: c < d < t < x).
var frozenKinds = [...]byte{'c', 'd', 't', 'x'}

// freeze reads the volume's keys (caller holds the volume's lock).
func (s *volStore) freeze() (*frozenVolume, error) {
	f := &frozenVolume{}
	err := s.mem.View(func(tx *buntdb.Tx) error {
		n, err := tx.Len()
		if err != nil {
			return err
		}
		f.pairs = make([]frozenKV, 0, n)
		return tx.Ascend("", func(k, v string) bool {
			if k == "" || k[0] == 'm' || k[0] == 'u' { // meta, parents: not in a snapshot
				return true
			}
			f.pairs = append(f.pairs, frozenKV{k, v})
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("freeze volume %s: %w", s.path, err)
	}
	return f, nil
}

// kindRange is where the keys of one kind lie in pairs.
func (f *frozenVolume) kindRange(kind byte) (lo, hi int) {
	lo = sort.Search(len(f.pairs), func(i int) bool { return f.pairs[i].k[0] >= kind })
	hi = sort.Search(len(f.pairs), func(i int) bool { return f.pairs[i].k[0] > kind })
	return lo, hi
}

// eachInode calls fn with every inode, in inode order, each read whole
// (as volStore.eachInode): one inode's content at a time. The content
// of a file stored in one chunk is the frozen string's bytes, not a copy:
// fn must not change in.Data (sending it only reads it).
func (f *frozenVolume) eachInode(fn func(*SnapInode) error) error {
	var cur, end [len(frozenKinds)]int
	for i, kind := range frozenKinds {
		cur[i], end[i] = f.kindRange(kind)
	}
	lo, hi := f.kindRange('i')
	in := new(SnapInode) // reused: fn holds it only during the call
	for _, p := range f.pairs[lo:hi] {
		ino, _, err := parseInoKey(p.k)
		if err != nil {
			return err
		}
		*in = SnapInode{Ino: ino}
		if in.Attr, err = decodeAttr(p.v); err != nil {
			return fmt.Errorf("key %q: %w", p.k, err)
		}
		for i := range frozenKinds {
			if cur[i], err = f.readKind(in, cur[i], end[i]); err != nil {
				return err
			}
		}
		denseExtents(in)
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// readKind reads into in the keys of one kind that belong to it, from
// pairs[pos:end], and returns the position after them. Keys of inodes
// before in's (left without an i: key) are passed over, as they were
// before the cursors.
func (f *frozenVolume) readKind(in *SnapInode, pos, end int) (int, error) {
	get := func(uint64) *SnapInode { return in }
	for ; pos < end; pos++ {
		p := f.pairs[pos]
		ino, rest, err := parseInoKey(p.k)
		if err != nil {
			return pos, err
		}
		if ino > in.Ino {
			break
		}
		if ino < in.Ino {
			continue
		}
		switch {
		case p.k[0] == 'c' && in.Data == nil && p.v != "":
			err = addChunkShared(in, rest, p.v)
		case p.k[0] == 'c' && in.Data != nil && in.Extents == nil: // after a shared chunk 0
			in.Extents = []Extent{{Off: 0, Len: uint64(len(in.Data))}}
			fallthrough
		default:
			err = readKey(p.k, p.v, get)
		}
		if err != nil {
			return pos, fmt.Errorf("key %q: %w", p.k, err)
		}
	}
	return pos, nil
}

// addChunkShared is addChunk for a file's first stored chunk: its data is
// val's bytes, not a copy (a further chunk's append copies them: the
// slice's capacity ends at val's end), and chunk 0 gets no extent list
// (readKind makes it if another chunk follows). A 1 KiB file's content
// was an allocation and a copy per file on every fetch, and its extent
// list one more.
func addChunkShared(in *SnapInode, rest, val string) error {
	idx, err := parseChunkIdx(rest)
	if err != nil {
		return err
	}
	if idx > 0 { // chunk 0: no extents, the data is from offset 0 (denseExtents)
		in.Extents = append(in.Extents, Extent{Off: idx * contentChunk, Len: uint64(len(val))})
	}
	in.Data = unsafe.Slice(unsafe.StringData(val), len(val))
	return nil
}
