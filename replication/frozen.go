package replication

import (
	"fmt"

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
type frozenVolume struct {
	pairs  []frozenKV
	inodes []int            // the i: keys, in inode order (indexes of pairs)
	rest   map[uint64][]int // an inode's c:, d:, t:, x: keys, each kind in key order
}

type frozenKV struct{ k, v string }

// freeze reads the volume's keys (caller holds the volume's lock).
func (s *volStore) freeze() (*frozenVolume, error) {
	f := &frozenVolume{rest: map[uint64][]int{}}
	err := s.mem.View(func(tx *buntdb.Tx) error {
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
	for i, p := range f.pairs {
		ino, _, err := parseInoKey(p.k)
		if err != nil {
			return nil, err
		}
		if p.k[0] == 'i' {
			f.inodes = append(f.inodes, i)
		} else {
			f.rest[ino] = append(f.rest[ino], i)
		}
	}
	return f, nil
}

// eachInode calls fn with every inode, in inode order, each read whole
// (as volStore.eachInode): one inode's content at a time.
func (f *frozenVolume) eachInode(fn func(*SnapInode) error) error {
	for _, i := range f.inodes {
		p := f.pairs[i]
		ino, _, err := parseInoKey(p.k)
		if err != nil {
			return err
		}
		in := &SnapInode{Ino: ino}
		if in.Attr, err = decodeAttr(p.v); err != nil {
			return fmt.Errorf("key %q: %w", p.k, err)
		}
		get := func(uint64) *SnapInode { return in }
		for _, j := range f.rest[ino] {
			if err := readKey(f.pairs[j].k, f.pairs[j].v, get); err != nil {
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
