package replication

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
)

// Writing a database file without holding it in memory.
//
// buntdb keeps every key of a database in memory, a file-backed one too,
// so a volume written into a new file through buntdb.Open — an install, a
// compaction — is held a second time until that database is closed, on
// top of the volume being replaced (and, for an install, of the snapshot
// received whole). That made a replica's peak memory during an install
// three times its volume and more (docs/failures.md, 3a). A new file is
// written here directly, in buntdb's own format (RESP arrays of bulk
// strings: set and del commands), through a buffer: what it holds is the
// buffer, one inode at a time.

// aofWriter writes set and del commands to a new database file.
type aofWriter struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte // one command
}

// aofBuffer is the write buffer of a new database file.
const aofBuffer = 1 << 20

func createAOF(path string) (*aofWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &aofWriter{f: f, w: bufio.NewWriterSize(f, aofBuffer)}, nil
}

func (a *aofWriter) set(k, v string) error { return a.command("set", k, v) }

func (a *aofWriter) del(k string) error { return a.command("del", k) }

// command writes one command as buntdb does (appendArray,
// appendBulkString); a value larger than the buffer goes straight through.
func (a *aofWriter) command(args ...string) error {
	b := append(a.buf[:0], '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, s := range args[:len(args)-1] {
		b = appendBulk(b, s)
	}
	last := args[len(args)-1]
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(last)), 10)
	b = append(b, '\r', '\n')
	a.buf = b
	if _, err := a.w.Write(b); err != nil {
		return err
	}
	if _, err := a.w.WriteString(last); err != nil {
		return err
	}
	_, err := a.w.WriteString("\r\n")
	return err
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// finish flushes the file, fsyncs it and closes it.
func (a *aofWriter) finish() error {
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// abort closes the file (the caller removes it).
func (a *aofWriter) abort() { _ = a.f.Close() }

// writeAOF writes a new database file at path through fill, fsynced.
func writeAOF(path string, fill func(set func(k, v string) error) error) error {
	_ = os.Remove(path)
	w, err := createAOF(path)
	if err != nil {
		return err
	}
	if err := fill(w.set); err != nil {
		w.abort()
		_ = os.Remove(path)
		return err
	}
	if err := w.finish(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// installWriter writes a snapshot into a new database file as its inodes
// arrive (ReplicaServer.Install): the replica holds one inode's content at
// a time and the rest of the snapshot without contents, which the checks
// that need the whole snapshot (checkSnapshot: references, the tree) read
// at the end. The file is renamed over the volume's only once whole and
// checked (volStore.replace).
type installWriter struct {
	path string
	w    *aofWriter
	hdr  installHeader
	// exts holds the extents of each file written with content, so that
	// finish can delete the chunks of a file it drops (the assembler keeps
	// no contents).
	exts map[uint64][]Extent
}

// installHeader is what installWriter needs of the snapshot's header.
type installHeader struct {
	nextIno uint64
	lim     Limits
}

// newInstallWriter starts a new file next to the volume's database, named
// uniquely: two primaries may install at once (the term decides which
// one's file is renamed into place).
func newInstallWriter(dbPath string, nextIno uint64, lim Limits) (*installWriter, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	path := dbPath + installSuffix + hex.EncodeToString(rnd[:])
	w, err := createAOF(path)
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	return &installWriter{path: path, w: w, hdr: installHeader{nextIno: nextIno, lim: lim}, exts: make(map[uint64][]Extent)}, nil
}

// installSuffix names install files in progress; opening a volume removes
// those a stopped process left (removeStaleInstalls).
const installSuffix = ".install-"

// inode checks one whole inode and writes it: everything but the u: keys
// of its entries, written at the end when every inode's type is known.
func (iw *installWriter) inode(in *SnapInode) error {
	if err := checkSnapInode(in, iw.hdr.nextIno, iw.hdr.lim); err != nil {
		return err
	}
	if err := writeSnapInode(iw.w.set, in); err != nil {
		return fmt.Errorf("install: write %s: %w", iw.path, err)
	}
	if len(in.Data) > 0 {
		iw.exts[in.Ino] = extentsOf(in.Extents, in.Data)
	}
	return nil
}

// finish completes the file once the snapshot checked out: all holds every
// inode as received (without contents), kept those checkSnapshot kept. The
// others (unlinked files still open on the primary) are deleted again.
func (iw *installWriter) finish(all, kept *Snapshot, m meta) error {
	keep := make(map[uint64]bool, len(kept.Inodes))
	for i := range kept.Inodes {
		keep[kept.Inodes[i].Ino] = true
	}
	err := func() error {
		for i := range all.Inodes {
			if in := &all.Inodes[i]; !keep[in.Ino] {
				if err := deleteSnapInode(iw.w.del, in, iw.exts[in.Ino]); err != nil {
					return err
				}
			}
		}
		if err := writeUps(iw.w.set, kept); err != nil {
			return err
		}
		if err := iw.w.set(keyMeta, m.encode()); err != nil {
			return err
		}
		return iw.w.finish()
	}()
	if err != nil {
		iw.abort()
		return fmt.Errorf("install: write %s: %w", iw.path, err)
	}
	return nil
}

// abort drops the file.
func (iw *installWriter) abort() {
	iw.w.abort()
	_ = os.Remove(iw.path)
}

// deleteSnapInode deletes the keys writeSnapInode wrote for in (its
// content and xattr values need not be there, only their names; exts says
// where its content was).
func deleteSnapInode(del func(k string) error, in *SnapInode, exts []Extent) error {
	keys := []string{attrKey(in.Ino)}
	keys = appendChunkKeys(keys, in.Ino, exts)
	if in.Target != "" {
		keys = append(keys, targetKey(in.Ino))
	}
	for name := range in.Xattrs {
		keys = append(keys, xattrKey(in.Ino, name))
	}
	for _, e := range in.Entries {
		keys = append(keys, dentKey(in.Ino, e.Name))
	}
	for _, k := range keys {
		if err := del(k); err != nil {
			return err
		}
	}
	return nil
}

// replace makes the database file at tmp, whole and fsynced, the volume:
// the old volume is let go first, so that it and the new one are never in
// memory together, then tmp is renamed over the file and opened.
func (s *volStore) replace(tmp string) error {
	s.close()
	debug.FreeOSMemory()
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return errors.Join(fmt.Errorf("install: rename %s: %w", tmp, err), s.open())
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	s.commits++
	return s.open()
}

// removeStaleInstalls removes the install files a stopped process left
// next to the database at dbPath.
func removeStaleInstalls(dbPath string) {
	stale, _ := filepath.Glob(dbPath + installSuffix + "*")
	for _, p := range stale {
		_ = os.Remove(p)
	}
}
