package replication

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
	"go.uber.org/zap"
)

// DefaultCompactMin is the database file size below which the store never
// compacts (WithCompactMin changes it).
const DefaultCompactMin = 64 << 20

// volStore is the buntdb database of one volume on a replica. It is not
// safe for concurrent use: the volume's mutex serialises every call except
// readSnapshot, which only reads.
//
// Two buntdb databases: db is the file — the volume as of the last
// compaction plus one l:<lsn> entry per batch committed since — and mem
// (in memory) is the volume itself, every batch applied, which all reads
// use. A batch is one Set of one key in db, so it is on disk whole or not
// at all (doc.go, "Replica side"). mem shares the strings of db's entries.
type volStore struct {
	path        string        // "" for an in-memory store (tests, fuzzing)
	db          *buntdb.DB    // the file; nil in memory
	mem         *buntdb.DB    // the volume, every committed batch applied
	syncf       *os.File      // the database file, for our own fsync
	meta        meta          // as committed
	commits     uint64        // committed batches (one fsync each)
	compactions uint64        // rewrites of the file since it was opened
	shrinkAt    int64         // file size that triggers the next shrink
	shrinkMin   int64         // never shrink below this size
	durableSize int64         // the file's size at its last fsync; -1: unknown
	lastSync    time.Duration // how long the last fsync took (0 in memory): the batch log line
	log         *zap.Logger
}

// openVolStore opens (or creates) the database at path, replays a
// leftover redo and reads the volume's position. A database buntdb cannot
// parse is moved aside and the volume starts empty: its replicas will
// install a snapshot.
func openVolStore(path string, compactMin int64, log *zap.Logger) (*volStore, error) {
	if compactMin <= 0 {
		compactMin = DefaultCompactMin
	}
	s := &volStore{path: path, log: log, shrinkAt: compactMin, shrinkMin: compactMin}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *volStore) open() error {
	s.durableSize = -1
	if err := s.cutToDurable(); err != nil {
		return err
	}
	if s.path != "" {
		damaged, err := cutTornEnd(s.path, s.log)
		if err != nil {
			return err
		}
		if damaged {
			if err := s.moveAside(errors.New("damaged past its last whole command")); err != nil {
				return err
			}
		}
	}
	mem, err := buntdb.Open(":memory:")
	if err != nil {
		return fmt.Errorf("open the in-memory volume: %w", err)
	}
	s.mem = mem
	if s.path == "" {
		return s.loadMeta()
	}
	if s.db, err = s.openDB(); err != nil {
		s.close()
		return err
	}
	if s.syncf, err = os.OpenFile(s.path, os.O_RDWR, 0); err != nil {
		s.close()
		return fmt.Errorf("open %s for fsync: %w", s.path, err)
	}
	// What the file holds is made durable before any of it is reported:
	// a batch written by a process killed before its fsync may still be
	// only in the page cache.
	if err := s.sync(); err != nil {
		s.close()
		return err
	}
	if err := s.load(); err != nil {
		s.close()
		return err
	}
	if err := s.loadMeta(); err != nil {
		s.close()
		return err
	}
	return s.convert()
}

// convert turns a file written before contents were stored in chunks
// into the chunked format: in memory, then by rewriting the file (which
// opens it again). Until the rewrite succeeds the volume does not open, so
// no batch of the new format is ever logged on top of the old one.
func (s *volStore) convert() error {
	n, err := convertLegacy(s.mem)
	if err == nil && n > 0 {
		s.log.Info("converting the file to chunked contents", zap.String("path", s.path), zap.Int("files", n))
		err = s.compact()
	}
	if err != nil {
		s.close()
		return fmt.Errorf("convert %s: %w", s.path, err)
	}
	return nil
}

// load builds mem from the file: the compacted keys, then each logged
// batch in lsn order (and the redo of a batch an older version was
// writing when it stopped).
func (s *volStore) load() error {
	var logs []string
	var redo string
	err := s.db.View(func(tx *buntdb.Tx) error {
		return s.mem.Update(func(mtx *buntdb.Tx) error {
			var serr error
			err := tx.Ascend("", func(k, v string) bool {
				switch {
				case strings.HasPrefix(k, logPrefix):
					logs = append(logs, v) // in key order: lsn order
				case k == keyRedo:
					redo = v
				default:
					_, _, serr = mtx.Set(k, v, nil)
				}
				return serr == nil
			})
			if serr != nil {
				return serr
			}
			if err != nil {
				return err
			}
			if redo != "" {
				s.log.Warn("replaying an interrupted batch", zap.String("path", s.path))
				logs = append(logs, redo)
			}
			for _, l := range logs {
				changes, err := decodeChanges(l)
				if err != nil {
					return fmt.Errorf("log entry: %w", err)
				}
				if err := applyChanges(mtx, changes); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", s.path, err)
	}
	return nil
}

func (s *volStore) openDB() (*buntdb.DB, error) {
	name := s.path
	if name == "" {
		name = ":memory:"
	}
	db, err := buntdb.Open(name)
	if err != nil && s.path != "" && errors.Is(err, buntdb.ErrInvalid) {
		if err := s.moveAside(err); err != nil {
			return nil, err
		}
		db, err = buntdb.Open(name)
	}
	if err != nil {
		return nil, fmt.Errorf("open buntdb %s: %w", name, err)
	}
	var cfg buntdb.Config
	if err := db.ReadConfig(&cfg); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("read buntdb config: %w", err)
	}
	cfg.SyncPolicy = buntdb.Never // we fsync ourselves, once per batch
	cfg.AutoShrinkDisabled = true // we shrink between batches and fsync after
	if err := db.SetConfig(cfg); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("set buntdb config: %w", err)
	}
	return db, nil
}

// moveAside renames a damaged database file out of the way, kept for
// inspection; the volume starts empty and its primary installs a snapshot.
func (s *volStore) moveAside(why error) error {
	aside := fmt.Sprintf("%s.corrupt-%d", s.path, time.Now().Unix())
	s.log.Error("replica database unreadable: moved aside, the volume starts empty",
		zap.String("path", s.path), zap.String("moved_to", aside), zap.Error(why))
	if err := os.Rename(s.path, aside); err != nil {
		return fmt.Errorf("move corrupt %s aside: %w", s.path, err)
	}
	return nil
}

func (s *volStore) loadMeta() error {
	return s.mem.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get(keyMeta)
		if errors.Is(err, buntdb.ErrNotFound) {
			s.meta = meta{NextIno: RootIno + 1}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read meta: %w", err)
		}
		s.meta, err = decodeMeta(v)
		return err
	})
}

func (s *volStore) close() {
	for _, db := range []**buntdb.DB{&s.db, &s.mem} {
		if *db != nil {
			_ = (*db).Close()
			*db = nil
		}
	}
	if s.syncf != nil {
		_ = s.syncf.Close()
		s.syncf = nil
	}
	s.durableSize = -1
}

func (s *volStore) sync() error {
	if s.syncf == nil {
		return nil
	}
	start := time.Now()
	if err := fsyncHeld(s.syncf); err != nil {
		return fmt.Errorf("fsync %s: %w", s.path, err)
	}
	s.lastSync = time.Since(start)
	if fi, err := s.syncf.Stat(); err == nil {
		s.durableSize = fi.Size()
	} else {
		s.durableSize = -1
	}
	return nil
}

// failedSuffix names the marker a failed commit leaves next to the file:
// it holds the file's size at its last good fsync.
const failedSuffix = ".failed"

// markFailed records, after a commit failed, how much of the file is
// known to be durable: the size at its last good fsync. A failed fsync
// (or write) leaves the pages of the batch in an unknown state — Linux
// may keep them in the page cache marked clean and never write them — so
// the file as a later open reads it may hold a batch that is not on disk.
// The next open cuts the file back to that size (cutToDurable). Best
// effort, and whole or not at all: the commit often failed because the
// disk is full, and a marker cut short would stop every later open; without
// one, the replica that keeps running cuts the file from memory
// (volume.reopen).
func (s *volStore) markFailed() {
	if s.path == "" || s.syncf == nil || s.durableSize < 0 {
		return
	}
	marker := s.path + failedSuffix
	if err := replaceFile(marker, fmt.Appendf(nil, "%d\n", s.durableSize)); err != nil {
		s.log.Error("cannot record how much of the file is durable", zap.String("marker", marker), zap.Error(err))
	}
}

// replaceFile makes b the content of path durably and atomically: a
// temporary file written and fsynced, renamed over path, the directory
// fsynced. On error path is as before and the temporary file is gone.
func replaceFile(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// cutToDurable applies a marker markFailed left: the file is truncated to
// the size it had at its last good fsync, made durable, and the marker
// removed. What is cut was never acknowledged.
func (s *volStore) cutToDurable() error {
	if s.path == "" {
		return nil
	}
	marker := s.path + failedSuffix
	b, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", marker, err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("%s: not a file size: %q", marker, b)
	}
	if err := cutFile(s.path, size, s.log); err != nil {
		return fmt.Errorf("a commit failed earlier (%s): %w", marker, err)
	}
	if err := os.Remove(marker); err != nil {
		return fmt.Errorf("remove %s: %w", marker, err)
	}
	return syncDir(filepath.Dir(s.path))
}

// cutFile truncates the file at path to size, if it is longer, and makes
// that durable.
func cutFile(path string, size int64, log *zap.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() <= size {
		return nil
	}
	log.Warn("a commit failed: the file is cut back to what its last good fsync made durable",
		zap.String("path", path), zap.Int64("size", fi.Size()), zap.Int64("durable", size))
	if err := os.Truncate(path, size); err != nil {
		return fmt.Errorf("cut %s back to %d bytes: %w", path, size, err)
	}
	if err := fsyncPath(path); err != nil {
		return fmt.Errorf("cut %s back to %d bytes: fsync: %w", path, size, err)
	}
	return nil
}

// view starts a scratch view of the committed state; release it with done
// before commit.
func (s *volStore) view() (v *view, done func()) {
	tx, err := s.mem.Begin(false)
	if err != nil {
		return newView(nil), func() {}
	}
	return newView(tx), func() { _ = tx.Rollback() }
}

// commit makes v's changes and the new position durable: redo, changes,
// one fsync (doc.go). An error leaves the store unusable: the caller
// must drop it and reopen.
func (s *volStore) commit(v *view, m meta) error {
	v.set(keyMeta, m.encode())
	var changes []change
	if s.db == nil {
		changes = v.changes()
	} else {
		entry := v.encodeChanges()
		err := s.db.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(logKey(m.LSN), entry, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("write batch: %w", err)
		}
		if err := s.sync(); err != nil {
			return err
		}
		// mem keeps substrings of the logged entry rather than copies.
		// The entry was sealed just now: its seal need not be checked.
		if changes, err = decodeBody(entry[sealLen:]); err != nil {
			return fmt.Errorf("batch up to lsn %d: %w", m.LSN, err)
		}
	}
	err := s.mem.Update(func(tx *buntdb.Tx) error { return applyChanges(tx, changes) })
	if err != nil {
		return fmt.Errorf("apply batch in memory: %w", err)
	}
	s.meta = m
	s.commits++
	return nil
}

// maybeShrink rewrites the append-only file once it has doubled (and
// grown past shrinkMin). The next threshold gets a random factor of 1 to
// 1.5, so that replicas holding the same records do not all stall on a
// rewrite at the same moment: the primary's hedge rides over one slow
// replica, not over all of them.
func (s *volStore) maybeShrink() error {
	if s.syncf == nil {
		return nil
	}
	fi, err := s.syncf.Stat()
	if err != nil || fi.Size() < s.shrinkAt {
		return nil
	}
	start := time.Now()
	if err := s.compact(); err != nil {
		if s.db == nil {
			return err // the old file is gone and the new one did not open
		}
		s.log.Warn("compaction failed", zap.String("path", s.path), zap.Error(err))
		s.shrinkAt = fi.Size() * 2
		return nil
	}
	s.compactions++
	if fi2, err := s.syncf.Stat(); err == nil {
		next := float64(max(s.shrinkMin, fi2.Size()*2)) * (1 + rand.Float64()/2)
		s.shrinkAt = int64(next)
		s.log.Debug("compacted", zap.String("path", s.path), zap.Int64("from", fi.Size()),
			zap.Int64("to", fi2.Size()), zap.Duration("took", time.Since(start)))
	}
	return nil
}

// compact rewrites the database file with the volume as mem holds it, no
// log entries, the way install replaces it: a new file written and fsynced next to the old
// one, renamed over it, the directory fsynced, the database reopened. It
// runs between batches (the caller holds the volume), so nothing is
// written meanwhile. buntdb's own Shrink is not used: it sleeps 250 ms
// before it starts and renames a file it never fsynced.
func (s *volStore) compact() error {
	tmp := s.path + ".compact"
	err := writeAOF(tmp, func(set func(k, v string) error) error {
		return s.mem.View(func(tx *buntdb.Tx) error {
			var serr error
			err := tx.Ascend("", func(k, v string) bool {
				serr = set(k, v)
				return serr == nil
			})
			return cmp.Or(serr, err)
		})
	})
	if err != nil {
		return fmt.Errorf("compact: write %s: %w", tmp, err)
	}
	s.close()
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return errors.Join(fmt.Errorf("compact: rename %s: %w", tmp, err), s.open())
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return errors.Join(err, s.open())
	}
	return s.open()
}

// fsyncPath fsyncs the file at path.
func fsyncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// install replaces the whole volume with snap at position m, atomically:
// a new database file renamed over the old one (in memory: one
// transaction). On disk it takes snap's file contents (their Data is nil
// afterwards), so that they can be collected before the file is read back.
// A replica receiving an install writes it as it arrives instead
// (installWriter); this serves recovery and tests.
func (s *volStore) install(snap *Snapshot, m meta) error {
	if s.path == "" {
		err := s.mem.Update(func(tx *buntdb.Tx) error {
			if err := tx.DeleteAll(); err != nil {
				return err
			}
			return writeSnapshot(txSetter(tx), snap, m)
		})
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		s.meta = m
		s.commits++
		return nil
	}
	tmp := s.path + ".install"
	err := writeAOF(tmp, func(set func(k, v string) error) error { return writeSnapshot(set, snap, m) })
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	// The volume is on disk now; what opening it reads must not come on
	// top of the snapshot and the old volume: the caller's snapshot gives
	// up its contents, the old volume goes, and the garbage is collected
	// before the file is read back (replace).
	for i := range snap.Inodes {
		snap.Inodes[i].Data, snap.Inodes[i].Extents = nil, nil
	}
	return s.replace(tmp)
}

// txSetter sets keys in tx.
func txSetter(tx *buntdb.Tx) func(k, v string) error {
	return func(k, v string) error { _, _, err := tx.Set(k, v, nil); return err }
}

// writeSnapshot stores a validated snapshot, and m, through set.
func writeSnapshot(set func(k, v string) error, snap *Snapshot, m meta) error {
	if err := set(keyMeta, m.encode()); err != nil {
		return err
	}
	for i := range snap.Inodes {
		if err := writeSnapInode(set, &snap.Inodes[i]); err != nil {
			return err
		}
	}
	return writeUps(set, snap)
}

// writeSnapInode stores one inode: all its keys but the u: keys of the
// directories it names (writeUps).
func writeSnapInode(set func(k, v string) error, in *SnapInode) error {
	if err := set(attrKey(in.Ino), encodeAttr(in.Attr)); err != nil {
		return err
	}
	if in.Target != "" {
		if err := set(targetKey(in.Ino), in.Target); err != nil {
			return err
		}
	}
	if err := setContent(set, in); err != nil {
		return err
	}
	for name, val := range in.Xattrs {
		if err := set(xattrKey(in.Ino, name), string(val)); err != nil {
			return err
		}
	}
	for _, e := range in.Entries {
		if err := set(dentKey(in.Ino, e.Name), encodeU64(e.Ino)); err != nil {
			return err
		}
	}
	return nil
}

// writeUps stores the parent of every directory snap names.
func writeUps(set func(k, v string) error, snap *Snapshot) error {
	dirs := make(map[uint64]bool)
	for i := range snap.Inodes {
		if isDir(snap.Inodes[i].Attr) {
			dirs[snap.Inodes[i].Ino] = true
		}
	}
	for i := range snap.Inodes {
		for _, e := range snap.Inodes[i].Entries {
			if dirs[e.Ino] {
				if err := set(upKey(e.Ino), encodeU64(snap.Inodes[i].Ino)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// trimZeros drops trailing zero bytes: content is stored up to its last
// non-zero byte and read back padded to the size.
func trimZeros(b []byte) []byte {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return b[:i]
}

// readSnapshot copies the committed volume out of the database (u: keys
// are derived from the entries and not read back).
func (s *volStore) readSnapshot() (*Snapshot, meta, error) {
	inodes := make(map[uint64]*SnapInode)
	get := func(ino uint64) *SnapInode {
		in := inodes[ino]
		if in == nil {
			in = &SnapInode{Ino: ino}
			inodes[ino] = in
		}
		return in
	}
	m := s.meta
	err := s.mem.View(func(tx *buntdb.Tx) error {
		var ferr error
		err := tx.Ascend("", func(k, v string) bool {
			ferr = readKey(k, v, get)
			return ferr == nil
		})
		if err != nil {
			return err
		}
		return ferr
	})
	if err != nil {
		return nil, meta{}, fmt.Errorf("read volume %s: %w", s.path, err)
	}
	return assembleSnapshot(inodes, m), m, nil
}

func readKey(k, v string, get func(uint64) *SnapInode) error {
	if strings.HasPrefix(k, "m:") || strings.HasPrefix(k, "u:") {
		return nil
	}
	ino, rest, err := parseInoKey(k)
	if err != nil {
		return err
	}
	switch k[0] {
	case 'i':
		a, err := decodeAttr(v)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		get(ino).Attr = a
	case 't':
		get(ino).Target = v
	case 'c':
		if err := addChunk(get(ino), rest, v); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	case 'd':
		child, err := decodeU64(v)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		in := get(ino)
		in.Entries = append(in.Entries, SnapDirent{Name: rest, Ino: child})
	case 'x':
		in := get(ino)
		if in.Xattrs == nil {
			in.Xattrs = make(map[string][]byte)
		}
		in.Xattrs[rest] = []byte(v)
	default:
		return fmt.Errorf("unknown key %q", k)
	}
	return nil
}

func assembleSnapshot(inodes map[uint64]*SnapInode, m meta) *Snapshot {
	snap := &Snapshot{LSN: m.LSN, NextIno: m.NextIno, Inodes: make([]SnapInode, 0, len(inodes))}
	for _, in := range inodes {
		denseExtents(in)
		snap.Inodes = append(snap.Inodes, *in)
	}
	sort.Slice(snap.Inodes, func(i, j int) bool { return snap.Inodes[i].Ino < snap.Inodes[j].Ino })
	return snap
}

// eachInode calls fn with every inode of the volume, in inode order, each
// built from mem on its own: what readSnapshot returns whole, without
// holding the whole volume twice. The caller holds the volume.
func (s *volStore) eachInode(fn func(*SnapInode) error) error {
	return s.mem.View(func(tx *buntdb.Tx) error {
		var ferr error
		err := tx.AscendGreaterOrEqual("", "i:", func(k, v string) bool {
			if !strings.HasPrefix(k, "i:") {
				return false
			}
			in, err := inodeFromTx(tx, k, v)
			if err == nil {
				err = fn(in)
			}
			ferr = err
			return err == nil
		})
		if ferr != nil {
			return ferr
		}
		return err
	})
}

// inodeFromTx gathers one inode: its attributes (k, v), target, content,
// extended attributes and directory entries.
func inodeFromTx(tx *buntdb.Tx, k, v string) (*SnapInode, error) {
	ino, _, err := parseInoKey(k)
	if err != nil {
		return nil, err
	}
	in := &SnapInode{Ino: ino}
	if in.Attr, err = decodeAttr(v); err != nil {
		return nil, fmt.Errorf("key %q: %w", k, err)
	}
	if t, err := tx.Get(targetKey(ino)); err == nil {
		in.Target = t
	}
	get := func(uint64) *SnapInode { return in }
	for _, kind := range []byte{'c', 'x', 'd'} {
		prefix := childPrefix(kind, ino)
		var rerr error
		_ = tx.AscendGreaterOrEqual("", prefix, func(k, v string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			rerr = readKey(k, v, get)
			return rerr == nil
		})
		if rerr != nil {
			return nil, rerr
		}
	}
	denseExtents(in)
	return in, nil
}

// counts reports the number of inodes and the stored content bytes.
func (s *volStore) counts() (inodes, bytes uint64) {
	_ = s.mem.View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", "c:", func(k, v string) bool {
			switch k[0] {
			case 'c':
				bytes += uint64(len(v))
			case 'd':
				return true
			case 'i':
				inodes++
			default:
				return false
			}
			return true
		})
	})
	return inodes, bytes
}
