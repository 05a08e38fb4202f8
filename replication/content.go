package replication

import (
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// File contents on a replica: fixed-size chunks.
//
// A regular file's content is stored as chunks of contentChunk bytes,
// one key per chunk, c:<ino>:<chunk index>, each holding the chunk up to
// its last non-zero byte. A chunk that is all zeros (a hole, or zeros
// written) is not stored. So what a replica keeps in memory and on disk
// follows what was written, not a file's size: one byte at offset 2 GiB
// is one key of one byte. A whole data record states a file's content
// (Record.Extents), but only the chunks whose stored bytes change are
// written, so the batch that logs it — on disk — carries what changed at
// chunk granularity; a partial one (ranges.go) touches only the chunks of
// its ranges. Truncating drops the chunks past the new end and
// cuts the one it falls in.

// contentChunk is the size of one stored chunk of file content.
const contentChunk = 64 << 10

// maxExtents bounds the extents of one file's content. The actor's files
// have at most fsactor.MaxFileData / (2 pages) of them (a page of data,
// then a page of hole, up to 4 GiB): 512 Ki.
const maxExtents = 1 << 20

// chunkKey names chunk idx of file ino; chunk keys of a file sort by
// index.
func chunkKey(ino, idx uint64) string {
	b := make([]byte, 0, 35)
	b = append(b, 'c', ':')
	b = appendIno(b, ino)
	b = append(b, ':')
	return string(appendIno(b, idx))
}

// chunkPrefix is the prefix of every chunk key of file ino.
func chunkPrefix(ino uint64) string { return childPrefix('c', ino) }

// parseChunkIdx reads the chunk index of a chunk key's rest (after the
// inode and its ':').
func parseChunkIdx(rest string) (uint64, error) {
	if len(rest) != 16 {
		return 0, fmt.Errorf("chunk index %q: not 16 hex digits", rest)
	}
	ino, _, err := parseInoKey("c:" + rest)
	if err != nil {
		return 0, fmt.Errorf("chunk index %q: %w", rest, err)
	}
	return ino, nil
}

// checkContent validates a file's content as a record or a snapshot
// carries it: dataLen bytes placed by exts (nil: from offset 0) within
// size. Extents are sorted, do not overlap, are not empty and lie within
// the size; their lengths add up to dataLen; the data and the number of
// extents are bounded.
func checkContent(exts []Extent, dataLen int, size uint64, lim Limits) error {
	n := uint64(dataLen)
	if n > lim.MaxFileSize {
		return invalidf("data of %d bytes exceeds the limit %d", n, lim.MaxFileSize)
	}
	if exts == nil {
		if n > size {
			return invalidf("data of %d bytes beyond size %d", n, size)
		}
		return nil
	}
	if len(exts) > maxExtents {
		return invalidf("%d extents exceed the limit %d", len(exts), maxExtents)
	}
	var end, sum uint64
	for i, e := range exts {
		switch {
		case e.Len == 0:
			return invalidf("extent %d is empty", i)
		case e.Off < end:
			return invalidf("extent %d at %d overlaps or precedes the one before (ending at %d)", i, e.Off, end)
		case e.Off > size || e.Len > size-e.Off:
			return invalidf("extent %d [%d, +%d) beyond size %d", i, e.Off, e.Len, size)
		}
		end, sum = e.Off+e.Len, sum+e.Len
	}
	if sum != n {
		return invalidf("extents hold %d bytes, data has %d", sum, n)
	}
	return nil
}

// extentsOf returns the extents that place data: exts, or one extent from
// offset 0 when exts is nil.
func extentsOf(exts []Extent, data []byte) []Extent {
	if exts == nil && len(data) > 0 {
		return []Extent{{Off: 0, Len: uint64(len(data))}}
	}
	return exts
}

// eachChunk calls fn, in index order, with every chunk that the content
// (validated) touches, cut after its last non-zero byte (possibly empty:
// zeros were written there). A chunk that one run of data fills from its
// start, alone, is handed over as a piece of data (a dense file's every
// chunk); the others are put together in a buffer that fn must not keep.
func eachChunk(exts []Extent, data []byte, fn func(idx uint64, chunk []byte) error) error {
	exts = extentsOf(exts, data)
	var buf []byte
	cur, hi, open := uint64(0), 0, false
	flush := func() error {
		if !open {
			return nil
		}
		open = false
		return fn(cur, trimZeros(buf[:hi]))
	}
	for i, e := range exts {
		d := data[:e.Len]
		data = data[e.Len:]
		for off := e.Off; len(d) > 0; {
			idx, in := off/contentChunk, int(off%contentChunk)
			n := min(len(d), contentChunk-in)
			if open && idx != cur {
				if err := flush(); err != nil {
					return err
				}
			}
			alone := in == 0 && (n == contentChunk || i+1 == len(exts) || exts[i+1].Off >= (idx+1)*contentChunk)
			if alone {
				if err := fn(idx, trimZeros(d[:n])); err != nil {
					return err
				}
			} else {
				if !open {
					if buf == nil {
						buf = make([]byte, contentChunk)
					}
					clear(buf)
					cur, hi, open = idx, 0, true
				}
				copy(buf[in:], d[:n])
				hi = max(hi, in+n)
			}
			off, d = off+uint64(n), d[n:]
		}
	}
	return flush()
}

// writeContent replaces file ino's content with data placed by exts:
// chunks whose stored bytes change are set, chunks no longer holding
// anything are deleted, the others are left alone.
func (a *applier) writeContent(ino uint64, exts []Extent, data []byte) error {
	kept := make(map[uint64]bool)
	err := eachChunk(exts, data, func(idx uint64, chunk []byte) error {
		if len(chunk) == 0 {
			return nil
		}
		kept[idx] = true
		k := chunkKey(ino, idx)
		if old, ok := a.v.get(k); !ok || old != string(chunk) {
			a.v.set(k, string(chunk))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range a.v.keysFrom(chunkPrefix(ino), "") {
		idx, err := parseChunkIdx(k[len(chunkPrefix(ino)):])
		if err != nil {
			return fmt.Errorf("file %d: %w", ino, err)
		}
		if !kept[idx] {
			a.v.del(k)
		}
	}
	return nil
}

// cutContent drops what file ino stores at or past size: the chunks past
// it, and the tail of the one it falls in.
func (a *applier) cutContent(ino, size uint64) {
	prefix := chunkPrefix(ino)
	first := size / contentChunk
	for _, k := range a.v.keysFrom(prefix, chunkKey(ino, first)) {
		idx, err := parseChunkIdx(k[len(prefix):])
		if err != nil || idx > first {
			a.v.del(k)
			continue
		}
		v, _ := a.v.get(k)
		keep := int(size % contentChunk)
		if len(v) <= keep {
			continue
		}
		if c := trimZeros([]byte(v[:keep])); len(c) > 0 {
			a.v.set(k, string(c))
		} else {
			a.v.del(k)
		}
	}
}

// deleteContent drops every chunk of file ino.
func (a *applier) deleteContent(ino uint64) {
	for _, k := range a.v.keysFrom(chunkPrefix(ino), "") {
		a.v.del(k)
	}
}

// setContent stores a snapshot file's content through set (a new
// database: nothing to compare or delete).
func setContent(set func(k, v string) error, in *SnapInode) error {
	return eachChunk(in.Extents, in.Data, func(idx uint64, chunk []byte) error {
		if len(chunk) == 0 {
			return nil
		}
		return set(chunkKey(in.Ino, idx), string(chunk))
	})
}

// appendChunkKeys appends the key of every chunk the extents touch.
func appendChunkKeys(keys []string, ino uint64, exts []Extent) []string {
	next := uint64(0) // first index not listed yet
	for _, e := range exts {
		for idx := max(e.Off/contentChunk, next); idx <= (e.Off+e.Len-1)/contentChunk; idx++ {
			keys = append(keys, chunkKey(ino, idx))
			next = idx + 1
		}
	}
	return keys
}

// addChunk appends a stored chunk (read in index order) to in's content.
func addChunk(in *SnapInode, rest, val string) error {
	idx, err := parseChunkIdx(rest)
	if err != nil {
		return err
	}
	if val == "" {
		return nil
	}
	off := idx * contentChunk
	if n := len(in.Extents); n > 0 && in.Extents[n-1].Off+in.Extents[n-1].Len == off {
		in.Extents[n-1].Len += uint64(len(val))
	} else {
		in.Extents = append(in.Extents, Extent{Off: off, Len: uint64(len(val))})
	}
	in.Data = append(in.Data, val...)
	return nil
}

// denseExtents drops an extent list that says only "from offset 0".
func denseExtents(in *SnapInode) {
	if len(in.Extents) == 1 && in.Extents[0].Off == 0 {
		in.Extents = nil
	}
}

// isLegacyContentKey reports a c:<ino> key of the format before chunks
// (the whole content from offset 0 in one value).
func isLegacyContentKey(k string) bool {
	return len(k) == 18 && strings.HasPrefix(k, "c:")
}

// convertLegacy rewrites, in mem, the contents of a file written before
// chunks (one c:<ino> value each) as chunks, and returns how many files
// it converted. The caller then rewrites the file (compact), so that a
// file never mixes the two formats.
func convertLegacy(mem *buntdb.DB) (int, error) {
	var legacy [][2]string
	err := mem.View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", "c:", func(k, v string) bool {
			if !strings.HasPrefix(k, "c:") {
				return false
			}
			if isLegacyContentKey(k) {
				legacy = append(legacy, [2]string{k, v})
			}
			return true
		})
	})
	if err != nil || len(legacy) == 0 {
		return 0, err
	}
	err = mem.Update(func(tx *buntdb.Tx) error {
		for _, kv := range legacy {
			ino, _, err := parseInoKey(kv[0])
			if err != nil {
				return err
			}
			in := &SnapInode{Ino: ino, Data: []byte(kv[1])}
			if err := setContent(txSetter(tx), in); err != nil {
				return err
			}
			if _, err := tx.Delete(kv[0]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("convert file contents to chunks: %w", err)
	}
	return len(legacy), nil
}
