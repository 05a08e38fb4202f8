package replication

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// variedSnapshot has what a chunk can carry: a directory cut across
// pieces, a file cut across chunks, sparse content, xattrs, a symlink,
// attributes with every field set.
func variedSnapshot() *Snapshot {
	snap := &Snapshot{LSN: 7, NextIno: 6_000}
	root := SnapInode{Ino: 1, Attr: dirAttr()}
	for i := range 5_000 {
		root.Entries = append(root.Entries, SnapDirent{Name: fmt.Sprintf("m%06d", i), Ino: uint64(100 + i)})
	}
	big := bytes.Repeat([]byte("spool"), 500_000)
	odd := Attr{Mode: modeReg | 0o640, Uid: 1 << 31, Gid: 7, Nlink: 1, Rdev: 0, Size: 3 << 20, Atime: -5, Mtime: 1 << 62, Ctime: testTime}
	snap.Inodes = append(snap.Inodes, root,
		SnapInode{Ino: 2, Attr: fileAttr(len(big)), Data: big, Xattrs: map[string][]byte{"user.a": []byte("1"), "user.empty": {}}},
		SnapInode{Ino: 3, Attr: odd, Data: []byte("xy"), Extents: []Extent{{Off: 1 << 20, Len: 1}, {Off: 3<<20 - 1, Len: 1}}},
		SnapInode{Ino: 4, Attr: Attr{Mode: modeLnk | 0o777, Nlink: 1, Size: 6}, Target: "target"})
	for i := range 5_000 {
		snap.Inodes = append(snap.Inodes, SnapInode{Ino: uint64(100 + i), Attr: fileAttr(1024), Data: bytes.Repeat([]byte{byte(i)}, 1024)})
	}
	return snap
}

// TestDecodeChunkMatchesProto: every chunk a snapshot is sent as decodes
// (decodeChunk, what a Fetch's receiver reads) to what proto.Unmarshal
// makes of it, and the assembled snapshot is the one sent.
func TestDecodeChunkMatchesProto(t *testing.T) {
	snap := variedSnapshot()
	asm := &snapAssembler{lim: Limits{}.withDefaults()}
	var slab pieceSlab
	chunks := 0
	err := sendSnapshot(&pb.SnapshotHeader{Volume: vol, Term: 3, LastTerm: 2, NodeId: "n"}, snap, func(c *pb.SnapshotChunk) error {
		chunks++
		b, err := proto.Marshal(c)
		if err != nil {
			return err
		}
		want := &pb.SnapshotChunk{}
		if err := proto.Unmarshal(b, want); err != nil {
			return err
		}
		got, err := decodeChunk(b, &slab)
		if err != nil {
			return err
		}
		if !proto.Equal(got, want) {
			return fmt.Errorf("chunk %d decoded differs from proto's", chunks)
		}
		slab.sent(len(got.Inodes))
		return asm.add(got)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := asm.finish()
	if err != nil {
		t.Fatal(err)
	}
	snap.Inodes[1].Xattrs["user.empty"] = nil // proto3 bytes: empty comes back nil
	if !reflect.DeepEqual(got, snap) {
		t.Fatal("snapshot changed on the way")
	}
	if chunks < 3 {
		t.Fatalf("%d chunks: the big file was not cut", chunks)
	}
}

// TestDecodeChunkAliasing: data appended to a decoded piece (an inode's
// content assembled from pieces) never writes into the bytes that follow
// it in the received message.
func TestDecodeChunkAliasing(t *testing.T) {
	c := &pb.SnapshotChunk{Inodes: []*pb.SnapInode{
		{Ino: 2, Attr: attrToPB(fileAttr(8)), Data: []byte("abcd")},
		{Ino: 2, Cont: true, Data: []byte("efgh")},
		{Ino: 3, Attr: attrToPB(fileAttr(4)), Data: []byte("wxyz")},
	}}
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeChunk(b, &pieceSlab{})
	if err != nil {
		t.Fatal(err)
	}
	d := append(got.Inodes[0].Data, "!!!!!!!!!!!!"...)
	if string(d) != "abcd!!!!!!!!!!!!" || string(got.Inodes[1].Data) != "efgh" || string(got.Inodes[2].Data) != "wxyz" {
		t.Fatalf("append wrote into the message: %q %q", got.Inodes[1].Data, got.Inodes[2].Data)
	}
}

// TestDecodeChunkMutations: bytes changed at random in a chunk's wire
// form: whatever proto.Unmarshal reads (unknown fields dropped),
// decodeChunk reads the same; it never panics.
func TestDecodeChunkMutations(t *testing.T) {
	c := &pb.SnapshotChunk{Header: &pb.SnapshotHeader{Volume: vol, Lsn: 3, Inodes: 2}, Inodes: []*pb.SnapInode{
		{Ino: 2, Attr: attrToPB(fileAttr(8)), Data: []byte("abcd"), Extents: []uint64{0, 4}, Target: []byte("t"),
			Xattrs: []*pb.Xattr{{Name: []byte("user.x"), Value: []byte("v")}}},
		{Ino: 1, Attr: attrToPB(dirAttr()), Entries: []*pb.Dirent{{Name: []byte("f"), Ino: 2}}},
	}}
	orig, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	// an unpacked extent and an unknown field, as another encoder may send
	orig = protowire.AppendTag(orig, 2, protowire.BytesType)
	in := protowire.AppendTag(nil, 8, protowire.VarintType)
	in = protowire.AppendVarint(in, 9)
	in = protowire.AppendTag(in, 99, protowire.Fixed64Type)
	in = protowire.AppendFixed64(in, 1)
	orig = protowire.AppendBytes(orig, in)
	rng := rand.New(rand.NewPCG(1, 2))
	agreed := 0
	for range 20_000 {
		b := bytes.Clone(orig)
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] = byte(rng.UintN(256))
		}
		want := &pb.SnapshotChunk{}
		perr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, want)
		got, derr := decodeChunk(b, &pieceSlab{})
		if perr != nil {
			continue
		}
		if derr != nil {
			t.Fatalf("proto reads %x, decodeChunk does not: %v", b, derr)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%x: decodeChunk read\n%v\nproto\n%v", b, got, want)
		}
		agreed++
	}
	t.Logf("%d of 20000 mutations readable, read alike", agreed)
}

// TestDecodeChunkKnowsEveryField: a chunk with every field of every
// message in it set (found through the descriptors, so a field added to
// replication.proto later is set too) decodes to what proto.Unmarshal
// makes of it. decodeChunk names fields by number; without this test a
// new field would be dropped in silence on every Fetch.
func TestDecodeChunkKnowsEveryField(t *testing.T) {
	c := &pb.SnapshotChunk{}
	fillEveryField(c.ProtoReflect(), 0)
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.SnapshotChunk{}
	if err := proto.Unmarshal(b, want); err != nil {
		t.Fatal(err)
	}
	var slab pieceSlab
	got, err := decodeChunk(b, &slab)
	if err != nil {
		t.Fatalf("decodeChunk: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decodeChunk lost or changed a field:\n got %v\nwant %v", got, want)
	}
}

// fillEveryField sets every field of m to a value that is not its zero:
// two elements in each list, a message in each message field (to depth
// 3), the first field of each oneof.
func fillEveryField(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && o.Fields().Get(0) != fd {
			continue
		}
		switch {
		case fd.IsMap():
			continue // none in these messages; a map would need its own filling
		case fd.IsList():
			l := m.Mutable(fd).List()
			for k := range 2 {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fillEveryField(e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(scalarValue(fd, k+i))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 3 {
				fillEveryField(m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, scalarValue(fd, i))
		}
	}
}

// scalarValue is a value of fd's kind that is not its zero, varying with k.
func scalarValue(fd protoreflect.FieldDescriptor, k int) protoreflect.Value {
	n := uint64(k + 1)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(1))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n) << 33)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(n << 33)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("s%d", n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("b%d", n)))
	}
	panic(fmt.Sprintf("field %s: kind %v", fd.FullName(), fd.Kind()))
}
