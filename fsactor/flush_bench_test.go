package fsactor

import (
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// BenchmarkFlush64MiB measures the actor's busy time for a FLUSH of a
// dirty 64 MiB file: the State step alone, which is what the actor does
// before it replies or hands the wait to a task, and what every other
// FUSE request waits behind. Each iteration dirties the file with a
// one-byte write (not timed) and times the FLUSH; the sink then releases
// the record (not timed), as replication does once it has read it. The
// step is State.Handle, whose Effects carry the record to the sink.
func BenchmarkFlush64MiB(b *testing.B) {
	const size = 64 << 20
	st, err := NewState(Config{}, nil) // a sink that ships: not DiscardContent
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, now := Caller{Uid: 1000, Gid: 1000}, time.Unix(1_700_000_000, 0)
	var last *Record
	step := func(op any) {
		eff := st.Handle(op, c, now)
		if eff.Err != 0 {
			b.Fatalf("%T: %v", op, eff.Err)
		}
		for _, r := range eff.Records {
			last = r
		}
		eff.Reset()
	}
	cr := &fuseops.CreateFileOp{Parent: rootIno, Name: "big", Mode: 0o644, OpenFlags: syscall.O_RDWR}
	step(cr)
	ino, fh := cr.Entry.Child, cr.Handle
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for off := int64(0); off < size; off += int64(len(chunk)) {
		step(&fuseops.WriteFileOp{Inode: ino, Handle: fh, Offset: off, Data: chunk})
	}
	flush := &fuseops.FlushFileOp{Inode: ino, Handle: fh}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		step(&fuseops.WriteFileOp{Inode: ino, Handle: fh, Offset: 0, Data: chunk[:1]})
		b.StartTimer()
		step(flush)
		b.StopTimer()
		releaseRecord(last)
		b.StartTimer()
	}
}

// releaseRecord ends a data record's content view, as a sink does once it
// has read it.
func releaseRecord(r *Record) {
	if r != nil && r.Content != nil {
		r.Content.Release()
	}
}
