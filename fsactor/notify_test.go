package fsactor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// fakeDev stands for /dev/fuse: it records each write (one notification
// each) and answers with answer(b) (nil: success).
type fakeDev struct {
	mu     sync.Mutex
	writes [][]byte
	answer func(b []byte) error
	wrote  chan struct{}
	block  chan struct{} // non-nil: writes wait until it is closed
}

func newFakeDev(answer func([]byte) error) *fakeDev {
	return &fakeDev{answer: answer, wrote: make(chan struct{}, 1024)}
}

func (d *fakeDev) Write(b []byte) (int, error) {
	if d.block != nil {
		<-d.block
	}
	var err error
	if d.answer != nil {
		err = d.answer(b)
	}
	d.mu.Lock()
	d.writes = append(d.writes, bytes.Clone(b))
	d.mu.Unlock()
	d.wrote <- struct{}{}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// await waits until want has been written.
func (d *fakeDev) await(t *testing.T, want []byte) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		d.mu.Lock()
		for _, w := range d.writes {
			if bytes.Equal(w, want) {
				d.mu.Unlock()
				return
			}
		}
		n := len(d.writes)
		d.mu.Unlock()
		select {
		case <-d.wrote:
		case <-timeout:
			t.Fatalf("notification %x not written (%d writes)", want, n)
		}
	}
}

func (d *fakeDev) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.writes)
}

// TestEncodeNote checks the wire layouts of include/uapi/linux/fuse.h.
func TestEncodeNote(t *testing.T) {
	le := binary.LittleEndian
	hdr := func(n int, code uint32) []byte {
		b := le.AppendUint32(nil, uint32(n))
		b = le.AppendUint32(b, code)
		return le.AppendUint64(b, 0)
	}
	del := hdr(16+24+4, 6)
	del = le.AppendUint64(del, 1)
	del = le.AppendUint64(del, 42)
	del = le.AppendUint32(del, 3)
	del = le.AppendUint32(del, 0)
	del = append(del, 'a', 'b', 'c', 0)

	ent := hdr(16+16+2, 3)
	ent = le.AppendUint64(ent, 7)
	ent = le.AppendUint32(ent, 1)
	ent = le.AppendUint32(ent, 0)
	ent = append(ent, 'x', 0)

	ino := hdr(16+24, 2)
	ino = le.AppendUint64(ino, 9)
	ino = le.AppendUint64(ino, 0)
	ino = le.AppendUint64(ino, ^uint64(0)) // len -1: to the end

	for _, tc := range []struct {
		n    Note
		want []byte
	}{
		{Note{Kind: NoteDelete, Parent: 1, Child: 42, Name: "abc"}, del},
		{Note{Kind: NoteInvalEntry, Parent: 7, Name: "x"}, ent},
		{Note{Kind: NoteInvalInode, Child: 9, Off: 0, Len: -1}, ino},
	} {
		got := encodeNote(nil, tc.n)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s:\n got %x\nwant %x", noteKindName(tc.n.Kind), got, tc.want)
		}
		if int(le.Uint32(got)) != len(got) {
			t.Errorf("%s: header len %d, message %d bytes", noteKindName(tc.n.Kind), le.Uint32(got), len(got))
		}
	}
}

// TestNotifyENOENTIsBenign: the kernel's ENOENT (no such cached entry) is
// counted as benign, not retried; other errors count as failed.
func TestNotifyENOENTIsBenign(t *testing.T) {
	dev := newFakeDev(func(b []byte) error {
		if bytes.Contains(b, []byte("stale")) {
			return &pathErr{syscall.ENOENT}
		}
		if bytes.Contains(b, []byte("bad")) {
			return syscall.EINVAL
		}
		return nil
	})
	p := newNotifyPool(dev, 2, 16, zaptest.NewLogger(t))
	p.post(Note{Kind: NoteDelete, Parent: 1, Child: 2, Name: "ok"})
	p.post(Note{Kind: NoteDelete, Parent: 1, Child: 3, Name: "stale"})
	p.post(Note{Kind: NoteInvalEntry, Parent: 2, Name: "bad"})
	p.close()
	got := p.stats()
	want := NotifyStats{Sent: 1, Benign: 1, Failed: 1}
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if n := dev.count(); n != 3 {
		t.Fatalf("%d writes, want 3 (no retry)", n)
	}
}

// pathErr wraps an errno the way os.File.Write does.
type pathErr struct{ errno syscall.Errno }

func (e *pathErr) Error() string { return "write /dev/fuse: " + e.errno.Error() }
func (e *pathErr) Unwrap() error { return e.errno }

// countDev stands for /dev/fuse in the flood test: it counts the
// notifications written, by kind and name, and holds every write until
// open is closed.
type countDev struct {
	open    chan struct{}
	mu      sync.Mutex
	deletes map[string]int // notify_delete writes by name
	inodes  map[uint64]int // inval_inode writes by inode
	writes  int
}

func (d *countDev) Write(b []byte) (int, error) {
	<-d.open
	le := binary.NativeEndian
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes++
	switch le.Uint32(b[4:]) {
	case notifyDelete:
		n := le.Uint32(b[outHeaderSize+16:])
		d.deletes[string(b[outHeaderSize+deleteSize:outHeaderSize+deleteSize+int(n)])]++
	case notifyInvalInode:
		d.inodes[le.Uint64(b[outHeaderSize:])]++
	}
	return len(b), nil
}

// TestNotifyFloodKeepsEveryDelete: with the workers stuck on the device, a
// flood of notes far larger than the queues never blocks the poster, and
// once the device answers again every name's notify_delete is written:
// nothing is dropped. Invalidations of one inode coalesce while they wait.
func TestNotifyFloodKeepsEveryDelete(t *testing.T) {
	dev := &countDev{open: make(chan struct{}), deletes: map[string]int{}, inodes: map[uint64]int{}}
	p := newNotifyPool(dev, 2, 8, zaptest.NewLogger(t))
	const names = 2000
	done := make(chan struct{})
	go func() { // the actor
		for i := range names {
			p.post(Note{Kind: NoteDelete, Parent: uint64(1 + i%3), Child: uint64(100 + i), Name: fmt.Sprint("m", i)})
			p.post(Note{Kind: NoteInvalInode, Child: 7, Off: -1})
		}
		p.post(Note{Kind: NoteInvalInode, Child: 7, Len: -1})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("post blocked while the workers were stuck")
	}
	st := p.stats()
	if st.Overflowed == 0 || st.Coalesced == 0 || st.Dropped != 0 || st.Queued != st.Overflow+8 {
		t.Fatalf("stats while stuck %+v: want overflowed and coalesced notes, none dropped, Queued = queues (8) + overflow", st)
	}
	t.Logf("while stuck: %+v", st)
	close(dev.open)
	testsupport.WaitForErr(t, deadline, "every deletion to be written", func() error {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		if len(dev.deletes) != names {
			return fmt.Errorf("%d names deleted of %d", len(dev.deletes), names)
		}
		return nil
	})
	p.close()
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if n := dev.inodes[7]; n == 0 || n > 8 {
		t.Fatalf("inode 7 invalidated %d times, want coalesced (1..8)", n)
	}
	if st := p.stats(); st.Queued != 0 || st.Sent != uint64(dev.writes) {
		t.Fatalf("after: %+v, %d writes", st, dev.writes)
	}
}

// TestNotifyNoDevice: without a device every note is dropped, and closing
// works.
func TestNotifyNoDevice(t *testing.T) {
	p := newNotifyPool(nil, 2, 16, zaptest.NewLogger(t))
	p.post(Note{Kind: NoteDelete, Parent: 1, Child: 2, Name: "x"})
	p.close()
	if st := p.stats(); st.Dropped != 1 {
		t.Fatalf("stats %+v, want 1 dropped", st)
	}
}

// TestNotifyOrderPerDirectory: notes about one directory are written in
// the order they were posted.
func TestNotifyOrderPerDirectory(t *testing.T) {
	dev := newFakeDev(nil)
	p := newNotifyPool(dev, 4, 1024, zaptest.NewLogger(t))
	var want [][]byte
	for i := range 200 {
		n := Note{Kind: NoteInvalEntry, Parent: 5, Name: string(rune('a' + i%26))}
		want = append(want, encodeNote(nil, n))
		p.post(n)
		p.post(Note{Kind: NoteInvalEntry, Parent: uint64(6 + i%3), Name: "other"})
	}
	p.close()
	var got [][]byte
	for _, w := range dev.writes {
		if binary.LittleEndian.Uint64(w[16:]) == 5 {
			got = append(got, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d notes about dir 5 written, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("note %d out of order", i)
		}
	}
}
