package replication

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Receiving a Fetch (the primary's recovery, a follower's snapshot).
//
// The wire format is SnapshotChunk's, unchanged; only the reading differs
// from proto.Unmarshal's. proto.Unmarshal allocates every SnapInode, its
// Attr and a copy of each bytes field: for 1,000,000 files of 1 KiB that
// was 3,000,000 allocations and 1.3 s of the primary's CPU (issue 13).
// fetchCodec leaves each message's bytes in one buffer instead (one copy
// per message of about chunkSize), and decodeChunk reads the pieces out
// of it with their data, targets, names and values aliasing it (capped:
// an append never writes into the buffer) and their messages from blocks.
// A snapshot's contents then live in these buffers, a message's worth
// each, until the snapshot is dropped.

// rawChunk is a SnapshotChunk as received: fetchCodec fills it.
type rawChunk struct{ b []byte }

// fetchCodec is gRPC's proto codec, but a rawChunk gets the message's
// bytes. Named "proto", so the call's content-subtype, and what the
// replica reads and writes, stay the default's.
type fetchCodec struct{ encoding.CodecV2 }

func (c fetchCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawChunk); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// fetchCallOption makes a Fetch call's responses readable as rawChunk.
var fetchCallOption = grpc.ForceCodecV2(fetchCodec{encoding.GetCodecV2("proto")})

// fetchInto calls Fetch on cl and feeds the stream's chunks to asm, until
// the stream ends.
func fetchInto(ctx context.Context, cl pb.ReplicaClient, req *pb.FetchRequest, asm *snapAssembler) error {
	stream, err := cl.Fetch(ctx, req, fetchCallOption)
	if err != nil {
		return err
	}
	var slab pieceSlab
	for {
		var raw rawChunk
		if err := stream.RecvMsg(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c, err := decodeChunk(raw.b, &slab)
		if err != nil {
			return err
		}
		if err := asm.add(c); err != nil {
			return err
		}
		slab.sent(len(c.Inodes))
	}
}

// decodeChunk reads a SnapshotChunk's wire form (as proto.Unmarshal
// would, unknown fields left out) with its inodes' messages from slab
// and their bytes aliasing b.
func decodeChunk(b []byte, slab *pieceSlab) (*pb.SnapshotChunk, error) {
	c := &pb.SnapshotChunk{}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if c.Header == nil {
				c.Header = &pb.SnapshotHeader{}
			}
			return proto.UnmarshalOptions{Merge: true, DiscardUnknown: true}.Unmarshal(v, c.Header)
		case num == 2 && typ == protowire.BytesType:
			in := slab.inode()
			if err := decodeSnapInode(v, in, slab); err != nil {
				return err
			}
			c.Inodes = append(c.Inodes, in)
		}
		return nil
	})
	if err != nil {
		return nil, invalidf("snapshot: undecodable chunk: %v", err)
	}
	return c, nil
}

// decodeSnapInode reads a SnapInode's fields into in.
func decodeSnapInode(b []byte, in *pb.SnapInode, slab *pieceSlab) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case typ == protowire.VarintType && num == 1:
			in.Ino = x
		case typ == protowire.VarintType && num == 2:
			in.Cont = x != 0
		case typ == protowire.BytesType && num == 3:
			if in.Attr == nil {
				in.Attr = slab.attr(Attr{})
			}
			return decodeAttrPB(v, in.Attr)
		case typ == protowire.BytesType && num == 4:
			in.Target = alias(v)
		case typ == protowire.BytesType && num == 5:
			x := &pb.Xattr{}
			err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if typ == protowire.BytesType && num == 1 {
					x.Name = alias(v)
				} else if typ == protowire.BytesType && num == 2 {
					x.Value = alias(v)
				}
				return nil
			})
			in.Xattrs = append(in.Xattrs, x)
			return err
		case typ == protowire.BytesType && num == 6:
			d := slab.dirent()
			err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				if typ == protowire.BytesType && num == 1 {
					d.Name = alias(v)
				} else if typ == protowire.VarintType && num == 2 {
					d.Ino = x
				}
				return nil
			})
			in.Entries = append(in.Entries, d)
			return err
		case typ == protowire.BytesType && num == 7:
			in.Data = alias(v)
		case typ == protowire.VarintType && num == 8:
			in.Extents = append(in.Extents, x)
		case typ == protowire.BytesType && num == 8: // packed
			for len(v) > 0 {
				e, n := protowire.ConsumeVarint(v)
				if n < 0 {
					return protowire.ParseError(n)
				}
				in.Extents = append(in.Extents, e)
				v = v[n:]
			}
		}
		return nil
	})
}

// decodeAttrPB reads an Attr's fields into a.
func decodeAttrPB(b []byte, a *pb.Attr) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
		if typ != protowire.VarintType {
			return nil
		}
		switch num {
		case 1:
			a.Mode = uint32(x)
		case 2:
			a.Uid = uint32(x)
		case 3:
			a.Gid = uint32(x)
		case 4:
			a.Nlink = uint32(x)
		case 5:
			a.Rdev = uint32(x)
		case 6:
			a.Size = x
		case 7:
			a.Atime = int64(x)
		case 8:
			a.Mtime = int64(x)
		case 9:
			a.Ctime = int64(x)
		}
		return nil
	})
}

// eachField calls fn with each field of a message's wire form: its number
// and type and, by type, its bytes (length-delimited) or its value
// (varint). Other types are passed over, as unknown fields.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType || typ == protowire.VarintType {
			if err := fn(num, typ, v, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// alias is v as a field's value: nil when empty (as proto.Unmarshal
// leaves it), else v with its capacity cut at its end, so that appending
// to it copies rather than writes over the bytes after it.
func alias(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v[:len(v):len(v)]
}
