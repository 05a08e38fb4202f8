package replication

import (
	"fmt"
	"unsafe"

	pb "github.com/spoolfs/spoolfs/proto"
)

// Message sizes. Records and snapshots are cut so that no message carries
// much more than chunkSize bytes; maxMsgSize is what either side accepts.
const (
	chunkSize  = 1 << 20
	maxMsgSize = 8 << 20
)

// sendSnapshot streams a snapshot: hdr in the first chunk, then the
// inodes, each cut into pieces of at most chunkSize bytes. progress (may be
// nil) hears the inodes and data bytes sent so far. Content left out of a
// streamed snapshot is read one file at a time and dropped once sent.
func sendSnapshot(hdr *pb.SnapshotHeader, snap *Snapshot, send func(*pb.SnapshotChunk) error, progress func(inodes, bytes uint64)) error {
	hdr.NextIno, hdr.Lsn = snap.NextIno, snap.LSN
	hdr.Inodes, hdr.Bytes = uint64(len(snap.Inodes)), snapDataBytes(snap)
	each := func(fn func(*SnapInode) error) error {
		for i := range snap.Inodes {
			in := &snap.Inodes[i]
			if in.Data == nil && in.DataLen > 0 { // read now, dropped after
				if snap.Content == nil {
					return fmt.Errorf("snapshot: inode %d: content left out and no way to read it", in.Ino)
				}
				one := *in
				var err error
				if one.Extents, one.Data, err = snap.Content(in.Ino); err != nil {
					return fmt.Errorf("snapshot: content of inode %d: %w", in.Ino, err)
				}
				one.DataLen = 0
				in = &one
			}
			if err := fn(in); err != nil {
				return err
			}
		}
		return nil
	}
	return sendInodes(hdr, each, send, progress)
}

// sendInodes sends hdr (its counts filled in) and then the inodes each
// yields, in chunks of about chunkSize: one inode at a time is all it holds.
func sendInodes(hdr *pb.SnapshotHeader, each func(func(*SnapInode) error) error, send func(*pb.SnapshotChunk) error, progress func(inodes, bytes uint64)) error {
	cur := &pb.SnapshotChunk{Header: hdr}
	size := 0
	var doneInodes, doneBytes uint64
	var pieces []*pb.SnapInode
	var slab pieceSlab
	err := each(func(in *SnapInode) error {
		pieces = slab.appendPieces(pieces[:0], in)
		for _, piece := range pieces {
			ps := pieceSize(piece)
			if size+ps > chunkSize && (len(cur.Inodes) > 0 || cur.Header != nil) {
				if err := send(cur); err != nil {
					return err
				}
				slab.sent(len(cur.Inodes))
				cur, size = &pb.SnapshotChunk{Inodes: make([]*pb.SnapInode, 0, len(cur.Inodes))}, 0
			}
			cur.Inodes = append(cur.Inodes, piece)
			size += ps
		}
		doneInodes++
		doneBytes += uint64(len(in.Data))
		if progress != nil {
			progress(doneInodes, doneBytes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return send(cur)
}

// pieceSlab hands out the messages of the pieces from blocks: a block or
// two per chunk instead of two allocations per inode (its message and its
// attributes), which a 1,000,000-file fetch made 2,000,000 of. A chunk's
// pieces come from blocks of their own (sent starts new ones; an inode
// cut across two chunks shares a block with the chunk before): a sent
// message keeps its data referenced, and a block shared with every later
// chunk kept 512 sent pieces' data alive (TestInstallMemory: 1 MiB files).
type pieceSlab struct {
	inodes  []pb.SnapInode
	attrs   []pb.Attr
	dirents []pb.Dirent
	block   int // pieces per block: about the last chunk's
}

// dirent is a directory entry's message, from blocks of direntBlock.
func (s *pieceSlab) dirent() *pb.Dirent {
	if len(s.dirents) == 0 {
		s.dirents = make([]pb.Dirent, direntBlock)
	}
	p := &s.dirents[0]
	s.dirents = s.dirents[1:]
	return p
}

const direntBlock = 256

func (s *pieceSlab) inode() *pb.SnapInode {
	if len(s.inodes) == 0 {
		s.inodes = make([]pb.SnapInode, max(s.block, minBlock))
	}
	p := &s.inodes[0]
	s.inodes = s.inodes[1:]
	return p
}

// sent starts new blocks for the next chunk, sized after the n pieces of
// the chunk sent.
func (s *pieceSlab) sent(n int) {
	s.inodes, s.attrs, s.dirents = nil, nil, nil
	s.block = min(n+n/8+1, maxBlock)
}

const minBlock, maxBlock = 16, 4096

func (s *pieceSlab) attr(a Attr) *pb.Attr {
	if len(s.attrs) == 0 {
		s.attrs = make([]pb.Attr, max(s.block, minBlock))
	}
	p := &s.attrs[0]
	s.attrs = s.attrs[1:]
	p.Mode, p.Uid, p.Gid, p.Nlink, p.Rdev = a.Mode, a.Uid, a.Gid, a.Nlink, a.Rdev
	p.Size, p.Atime, p.Mtime, p.Ctime = a.Size, a.Atime, a.Mtime, a.Ctime
	return p
}

// appendPieces cuts an inode into a first piece and continuation pieces,
// appended to dst.
func (s *pieceSlab) appendPieces(dst []*pb.SnapInode, in *SnapInode) []*pb.SnapInode {
	first := s.inode()
	first.Ino, first.Attr = in.Ino, s.attr(in.Attr)
	if in.Target != "" {
		first.Target = []byte(in.Target)
	}
	pieces := append(dst, first)
	cur, budget := first, chunkSize
	next := func() {
		cur = s.inode()
		cur.Ino, cur.Cont = in.Ino, true
		pieces = append(pieces, cur)
		budget = chunkSize
	}
	if len(in.Xattrs) > 0 {
		for _, name := range sortedXattrNames(in.Xattrs) {
			val := in.Xattrs[name]
			if len(name)+len(val)+16 > budget {
				next()
			}
			cur.Xattrs = append(cur.Xattrs, &pb.Xattr{Name: []byte(name), Value: val})
			budget -= len(name) + len(val) + 16
		}
	}
	for _, e := range in.Entries {
		if len(e.Name)+16 > budget {
			next()
		}
		d := s.dirent()
		d.Name, d.Ino = stringBytes(e.Name), e.Ino
		cur.Entries = append(cur.Entries, d)
		budget -= len(e.Name) + 16
	}
	for _, e := range in.Extents {
		if extentWire > budget {
			next()
		}
		cur.Extents = append(cur.Extents, e.Off, e.Len)
		budget -= extentWire
	}
	data := in.Data
	for len(data) > 0 {
		if budget <= 0 {
			next()
		}
		n := min(len(data), budget)
		cur.Data = data[:n]
		data = data[n:]
		budget -= n
	}
	return pieces
}

// stringBytes is s's bytes, not a copy, for a message that is only
// marshalled: a name in a piece was a copy per directory entry (1,000,000
// of them in a 1,000,000-file volume's fetch).
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// extentWire is what one extent may take in a message: two varints.
const extentWire = 20

func pieceSize(p *pb.SnapInode) int {
	n := 64 + len(p.Target) + len(p.Data) + len(p.Extents)/2*extentWire
	for _, x := range p.Xattrs {
		n += len(x.Name) + len(x.Value) + 16
	}
	for _, e := range p.Entries {
		n += len(e.Name) + 16
	}
	return n
}

// snapAssembler rebuilds a snapshot from its chunks, checking the framing
// (checkSnapshot checks the content afterwards).
type snapAssembler struct {
	lim    Limits
	hdr    *pb.SnapshotHeader
	snap   Snapshot
	bytes  uint64
	onData func(inodes, bytes uint64) // progress, may be nil
	// emit, when set, takes each inode once whole; the assembler then
	// keeps it without its content and xattr values (Install writes the
	// snapshot as it arrives: installWriter).
	emit func(*SnapInode) error
}

func (a *snapAssembler) add(c *pb.SnapshotChunk) error {
	if a.hdr == nil {
		if c.Header == nil {
			return invalidf("snapshot: first chunk has no header")
		}
		a.hdr = c.Header
		a.snap.LSN, a.snap.NextIno = c.Header.Lsn, c.Header.NextIno
	} else if c.Header != nil {
		return invalidf("snapshot: header repeated")
	}
	for _, p := range c.Inodes {
		if err := a.addPiece(p); err != nil {
			return err
		}
	}
	if a.onData != nil {
		a.onData(uint64(len(a.snap.Inodes)), a.bytes)
	}
	return nil
}

func (a *snapAssembler) addPiece(p *pb.SnapInode) error {
	if !p.Cont {
		if err := a.emitLast(); err != nil {
			return err
		}
		if uint64(len(a.snap.Inodes)) >= a.hdr.Inodes {
			return invalidf("snapshot: more inodes than the header's %d", a.hdr.Inodes)
		}
		a.growInodes()
		a.snap.Inodes = append(a.snap.Inodes, SnapInode{Ino: p.Ino, Attr: attrFromPB(p.Attr), Target: string(p.Target)})
	}
	n := len(a.snap.Inodes)
	if n == 0 || a.snap.Inodes[n-1].Ino != p.Ino {
		return invalidf("snapshot: continuation of inode %d does not follow it", p.Ino)
	}
	in := &a.snap.Inodes[n-1]
	if uint64(len(in.Data))+uint64(len(p.Data)) > a.lim.MaxFileSize {
		return invalidf("snapshot: inode %d: data exceeds the limit %d", p.Ino, a.lim.MaxFileSize)
	}
	if in.Data == nil {
		in.Data = p.Data // the message's own copy (proto never aliases its buffer): not copied again
	} else {
		in.Data = append(in.Data, p.Data...)
	}
	a.bytes += uint64(len(p.Data))
	if len(p.Extents) > 0 {
		var err error
		if in.Extents, err = extentsFromPB(in.Extents, p.Extents); err != nil {
			return invalidf("snapshot: inode %d: %v", p.Ino, err)
		}
	}
	for _, x := range p.Xattrs {
		if in.Xattrs == nil {
			in.Xattrs = make(map[string][]byte)
		}
		in.Xattrs[string(x.Name)] = x.Value
	}
	for _, e := range p.Entries {
		in.Entries = append(in.Entries, SnapDirent{Name: string(e.Name), Ino: e.Ino})
	}
	return nil
}

// growInodes makes room for one more inode: four times the room, up to
// the header's count. append grows a large slice by 1.25x, which allocated
// five times the final slice (200 MB for 200,000 inodes) and copied as
// much; doubling still copied as much as the final slice, 7% of a fetch's
// CPU (an inode is about 190 bytes with pointers: a copy with write
// barriers). The header alone is not trusted with a preallocation (a bad
// one would reserve gigabytes), so it only caps the growth.
func (a *snapAssembler) growInodes() {
	n := len(a.snap.Inodes)
	if n < cap(a.snap.Inodes) {
		return
	}
	grown := make([]SnapInode, n, min(a.hdr.Inodes, uint64(4*n+1024)))
	copy(grown, a.snap.Inodes)
	a.snap.Inodes = grown
}

// emitLast hands the last inode, whole now, to emit, and drops its
// content and xattr values (their names stay: deleteSnapInode).
func (a *snapAssembler) emitLast() error {
	n := len(a.snap.Inodes)
	if a.emit == nil || n == 0 {
		return nil
	}
	in := &a.snap.Inodes[n-1]
	if err := a.emit(in); err != nil {
		return err
	}
	in.Data, in.Extents = nil, nil
	for name := range in.Xattrs {
		in.Xattrs[name] = nil
	}
	return nil
}

// finish returns the snapshot once every inode the header announced came.
func (a *snapAssembler) finish() (*pb.SnapshotHeader, *Snapshot, error) {
	if a.hdr == nil {
		return nil, nil, invalidf("snapshot: empty stream")
	}
	if err := a.emitLast(); err != nil {
		return nil, nil, err
	}
	if uint64(len(a.snap.Inodes)) != a.hdr.Inodes {
		return nil, nil, invalidf("snapshot: %d inodes of the header's %d", len(a.snap.Inodes), a.hdr.Inodes)
	}
	return a.hdr, &a.snap, nil
}
