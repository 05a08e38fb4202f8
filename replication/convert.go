package replication

import (
	"fmt"

	pb "github.com/spoolfs/spoolfs/proto"
)

func attrToPB(a Attr) *pb.Attr {
	return &pb.Attr{Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Nlink: a.Nlink, Rdev: a.Rdev,
		Size: a.Size, Atime: a.Atime, Mtime: a.Mtime, Ctime: a.Ctime}
}

func attrFromPB(a *pb.Attr) Attr {
	if a == nil {
		return Attr{}
	}
	return Attr{Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Nlink: a.Nlink, Rdev: a.Rdev,
		Size: a.Size, Atime: a.Atime, Mtime: a.Mtime, Ctime: a.Ctime}
}

// recordToPB encodes r with at most chunk bytes of its data; the caller
// sends the rest as more_data.
func recordToPB(r *Record, chunk int) *pb.Record {
	d := r.Data
	if len(d) > chunk {
		d = d[:chunk]
	}
	return &pb.Record{
		Term: r.Term, Lsn: r.LSN, Req: r.Req, Op: pb.Op(r.Op), Ino: r.Ino, Parent: r.Parent,
		Name: []byte(r.Name), NewParent: r.NewParent, NewName: []byte(r.NewName),
		Replaced: r.Replaced, Attr: attrToPB(r.Attr), Target: []byte(r.Target),
		XattrName: []byte(r.XattrName), Data: d, DataLen: uint64(len(r.Data)),
		Extents: extentsToPB(r.Extents), Partial: r.Partial, Ranges: extentsToPB(r.Ranges),
	}
}

// recordFromPB decodes a record but its extents and ranges (the caller
// reads them with extentsFromPB and rangesFromPB, which can fail); its
// Data holds the first chunk only when DataLen says more follows (the
// receiver appends the rest).
func recordFromPB(p *pb.Record) *Record {
	op := Op(0) // unknown: checkRecordShape rejects it
	if p.Op >= pb.Op_OP_CREATE && p.Op <= pb.Op_OP_DATA {
		op = Op(p.Op)
	}
	return &Record{
		Term: p.Term, LSN: p.Lsn, Req: p.Req, Op: op, Ino: p.Ino, Parent: p.Parent,
		Name: string(p.Name), NewParent: p.NewParent, NewName: string(p.NewName),
		Replaced: p.Replaced, Attr: attrFromPB(p.Attr), Target: string(p.Target),
		XattrName: string(p.XattrName), Data: p.Data, Partial: p.Partial,
	}
}

// decodeRecord decodes a record whole: its fields, extents and ranges
// (a partial record's). Every reader of records off the wire (a Ship
// stream, a follower's Watch) decodes them here, so none forgets the
// ranges and takes a partial record for a whole one. Its Data holds the
// first chunk only when DataLen says more follows.
func decodeRecord(p *pb.Record) (*Record, error) {
	r := recordFromPB(p)
	var err error
	if r.Extents, err = extentsFromPB(nil, p.Extents); err != nil {
		return nil, invalidf("lsn %d: %v", r.LSN, err)
	}
	if r.Ranges, err = rangesFromPB(p); err != nil {
		return nil, invalidf("lsn %d: %v", r.LSN, err)
	}
	return r, nil
}

// rangesFromPB reads a partial record's ranges (offset, length pairs):
// nil for a record that is not partial (checkPayload rejects ranges on
// it), never nil for one that is, so that a partial record of no range
// still says "ranges: none". Bounded by maxExtents; checkPartial checks
// the rest.
func rangesFromPB(p *pb.Record) ([]Extent, error) {
	if !p.Partial && len(p.Ranges) == 0 {
		return nil, nil
	}
	rs, err := extentsFromPB(make([]Extent, 0, len(p.Ranges)/2), p.Ranges)
	if err != nil {
		return nil, fmt.Errorf("ranges: %w", err)
	}
	return rs, nil
}

// extentsToPB flattens extents into (offset, length) pairs.
func extentsToPB(exts []Extent) []uint64 {
	if len(exts) == 0 {
		return nil
	}
	out := make([]uint64, 0, 2*len(exts))
	for _, e := range exts {
		out = append(out, e.Off, e.Len)
	}
	return out
}

// extentsFromPB reads (offset, length) pairs, appending them to exts; an
// odd count is invalid (checkContent checks the rest).
func extentsFromPB(exts []Extent, pairs []uint64) ([]Extent, error) {
	if len(pairs)%2 != 0 {
		return nil, invalidf("extents: %d numbers, not (offset, length) pairs", len(pairs))
	}
	if len(pairs)/2 > maxExtents-len(exts) {
		return nil, invalidf("extents: more than %d", maxExtents)
	}
	for i := 0; i < len(pairs); i += 2 {
		exts = append(exts, Extent{Off: pairs[i], Len: pairs[i+1]})
	}
	return exts, nil
}
