package replication

import (
	"encoding/binary"
	"fmt"
)

// The key layout of a volume's buntdb database. Inode numbers are 16 hex
// digits, so keys sort by inode and a directory's entries sort by name.
//
//	m:meta             meta (last term, lsn, next ino, initialized)
//	l:<lsn>            one committed batch: its physical change set, up to lsn (see doc.go)
//	m:redo             (older files) change set of a batch being written
//	i:<ino>            attributes (52 bytes)
//	t:<ino>            symlink target
//	c:<ino>:<chunk>    chunk of a file's content (content.go): absent chunks read as zeros
//	u:<ino>            a directory's parent (8 bytes)
//	d:<ino>:<name>     directory entry → child inode (8 bytes)
//	x:<ino>:<name>     extended attribute value
const (
	keyMeta   = "m:meta"
	keyRedo   = "m:redo"
	logPrefix = "l:"
)

// logKey names the log entry of the batch that ends at lsn; log keys sort
// in lsn order.
func logKey(lsn uint64) string { return inoKey('l', lsn) }

const hexDigits = "0123456789abcdef"

func appendIno(b []byte, ino uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(ino>>uint(shift))&0xf])
	}
	return b
}

func inoKey(kind byte, ino uint64) string {
	b := make([]byte, 0, 18)
	b = append(b, kind, ':')
	return string(appendIno(b, ino))
}

// childPrefix is the prefix of every d: (or x:) key under ino.
func childPrefix(kind byte, ino uint64) string {
	b := make([]byte, 0, 19)
	b = append(b, kind, ':')
	b = appendIno(b, ino)
	return string(append(b, ':'))
}

func dentKey(parent uint64, name string) string { return childPrefix('d', parent) + name }
func xattrKey(ino uint64, name string) string   { return childPrefix('x', ino) + name }
func attrKey(ino uint64) string                 { return inoKey('i', ino) }
func targetKey(ino uint64) string               { return inoKey('t', ino) }
func upKey(ino uint64) string                   { return inoKey('u', ino) }

// parseInoKey reads the inode number of a key written by inoKey or
// childPrefix, and the rest after the ':' that follows it.
func parseInoKey(k string) (ino uint64, rest string, err error) {
	if len(k) < 18 {
		return 0, "", fmt.Errorf("key %q: too short", k)
	}
	for i := 2; i < 18; i++ {
		c := k[i]
		switch {
		case c >= '0' && c <= '9':
			ino = ino<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			ino = ino<<4 | uint64(c-'a'+10)
		default:
			return 0, "", fmt.Errorf("key %q: bad inode digits", k)
		}
	}
	if len(k) > 18 {
		if k[18] != ':' {
			return 0, "", fmt.Errorf("key %q: bad separator", k)
		}
		rest = k[19:]
	}
	return ino, rest, nil
}

func encodeU64(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return string(b[:])
}

func decodeU64(s string) (uint64, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("uint64 value of %d bytes", len(s))
	}
	return binary.BigEndian.Uint64([]byte(s)), nil
}

const attrLen = 52

func encodeAttr(a Attr) string {
	b := make([]byte, attrLen)
	binary.BigEndian.PutUint32(b[0:], a.Mode)
	binary.BigEndian.PutUint32(b[4:], a.Uid)
	binary.BigEndian.PutUint32(b[8:], a.Gid)
	binary.BigEndian.PutUint32(b[12:], a.Nlink)
	binary.BigEndian.PutUint32(b[16:], a.Rdev)
	binary.BigEndian.PutUint64(b[20:], a.Size)
	binary.BigEndian.PutUint64(b[28:], uint64(a.Atime))
	binary.BigEndian.PutUint64(b[36:], uint64(a.Mtime))
	binary.BigEndian.PutUint64(b[44:], uint64(a.Ctime))
	return string(b)
}

func decodeAttr(s string) (Attr, error) {
	if len(s) != attrLen {
		return Attr{}, fmt.Errorf("attr value of %d bytes", len(s))
	}
	b := []byte(s)
	return Attr{
		Mode:  binary.BigEndian.Uint32(b[0:]),
		Uid:   binary.BigEndian.Uint32(b[4:]),
		Gid:   binary.BigEndian.Uint32(b[8:]),
		Nlink: binary.BigEndian.Uint32(b[12:]),
		Rdev:  binary.BigEndian.Uint32(b[16:]),
		Size:  binary.BigEndian.Uint64(b[20:]),
		Atime: int64(binary.BigEndian.Uint64(b[28:])),
		Mtime: int64(binary.BigEndian.Uint64(b[36:])),
		Ctime: int64(binary.BigEndian.Uint64(b[44:])),
	}, nil
}

// meta is a volume's position, stored under m:meta.
type meta struct {
	LastTerm    uint64 // term of the record at LSN (or of the installed snapshot)
	LSN         uint64
	NextIno     uint64
	Initialized bool // holds a volume (a root at least)
}

func (m meta) encode() string {
	b := make([]byte, 25)
	binary.BigEndian.PutUint64(b[0:], m.LastTerm)
	binary.BigEndian.PutUint64(b[8:], m.LSN)
	binary.BigEndian.PutUint64(b[16:], m.NextIno)
	if m.Initialized {
		b[24] = 1
	}
	return string(b)
}

func decodeMeta(s string) (meta, error) {
	if len(s) != 25 {
		return meta{}, fmt.Errorf("meta value of %d bytes", len(s))
	}
	b := []byte(s)
	return meta{
		LastTerm:    binary.BigEndian.Uint64(b[0:]),
		LSN:         binary.BigEndian.Uint64(b[8:]),
		NextIno:     binary.BigEndian.Uint64(b[16:]),
		Initialized: b[24] == 1,
	}, nil
}
