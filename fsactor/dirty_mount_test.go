package fsactor

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// replaySink replays every record on a model per inode as it arrives
// (reading a data record's content at once), as a replica would: safe
// for the test to read while the mount serves.
type replaySink struct {
	mu     sync.Mutex
	head   uint64
	files  map[uint64][]byte
	last   map[uint64]*Record // each inode's last data record
	failed error
}

func newReplaySink() *replaySink {
	return &replaySink{files: map[uint64][]byte{}, last: map[uint64]*Record{}}
}

func (s *replaySink) Append(r *Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.head = r.LSN
	if r.Content != nil {
		var err error
		r.Extents, r.Data, err = r.Content.Read()
		r.Content.Release()
		r.Content = nil
		if err != nil && s.failed == nil {
			s.failed = err
		}
	}
	if r.Attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	s.files[r.Ino] = replay(s.files[r.Ino], r)
	if r.Op == RecData {
		s.last[r.Ino] = r
	}
}

func (s *replaySink) Durable() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

func (s *replaySink) Wait(context.Context, uint64) error { return nil }

// check compares the replayed content of path's inode with the file and
// returns its last data record.
func (s *replaySink) check(t *testing.T, path string) *Record {
	t.Helper()
	want, err := readRaw(path) // raw: see the note above writeRaw
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		t.Fatal(s.failed)
	}
	if string(s.files[st.Ino]) != want {
		t.Fatalf("%s: the records replayed give %d bytes that differ from the file's %d", path, len(s.files[st.Ino]), len(want))
	}
	return s.last[st.Ino]
}

// TestMountDirtyRanges: through a real mount, an O_APPEND write, a
// copy_file_range into a file (which the kernel turns into writes) and a
// punched hole each ship a partial record of about the bytes changed, and
// the records replayed give the file.
func TestMountDirtyRanges(t *testing.T) {
	needMount(t)
	sink := newReplaySink()
	m := mountTest(t, Config{}, sink, nil)
	base := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	// Raw system calls on the mount, never os.Open: see the note above
	// writeRaw (os.Open's netpoller registration asks this very process
	// for FUSE_POLL while a garbage collection may wait for its P).
	if err := writeRaw(m.path("dst"), string(base)); err != nil {
		t.Fatal(err)
	}
	if err := writeRaw(m.path("src"), string(bytes.Repeat([]byte("S"), 10<<10))); err != nil {
		t.Fatal(err)
	}
	sink.check(t, m.path("dst"))

	within(t, deadline, "append", func() error {
		fd, err := syscall.Open(m.path("dst"), syscall.O_WRONLY|syscall.O_APPEND|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if _, err := syscall.Write(fd, []byte("appended")); err != nil {
			syscall.Close(fd)
			return err
		}
		return syscall.Close(fd)
	})
	r := sink.check(t, m.path("dst"))
	shipped(t, "an 8-byte append", r, 1<<20, 8)

	within(t, deadline, "copy_file_range", func() error {
		src, err := syscall.Open(m.path("src"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(src)
		dst, err := syscall.Open(m.path("dst"), syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		roff, woff := int64(0), int64(300<<10)
		for left := 10 << 10; left > 0; {
			n, err := unix.CopyFileRange(src, &roff, dst, &woff, left, 0)
			if err != nil {
				syscall.Close(dst)
				return err
			}
			if n == 0 {
				break
			}
			left -= n
		}
		return syscall.Close(dst)
	})
	r = sink.check(t, m.path("dst"))
	shipped(t, "copy_file_range of 10 KiB", r, 300<<10, 10<<10)

	within(t, deadline, "punch", func() error {
		fd, err := syscall.Open(m.path("dst"), syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 512<<10, 64<<10); err != nil {
			syscall.Close(fd)
			return err
		}
		return syscall.Close(fd)
	})
	r = sink.check(t, m.path("dst"))
	if len(r.Data) != 0 || len(r.Ranges) != 1 || r.Ranges[0].Off != 512<<10 || r.Ranges[0].Len != 64<<10 {
		t.Fatalf("a punched hole: %d bytes in %v, want no byte in [512 KiB, +64 KiB)", len(r.Data), r.Ranges)
	}
}

// shipped checks that a partial record carries the n bytes changed at
// off, within a page either side (the kernel may write whole pages).
func shipped(t *testing.T, what string, r *Record, off, n uint64) {
	t.Helper()
	if !r.Partial || len(r.Ranges) == 0 {
		t.Fatalf("%s: record partial %v, ranges %v", what, r.Partial, r.Ranges)
	}
	lo, hi := r.Ranges[0].Off, r.Ranges[len(r.Ranges)-1].Off+r.Ranges[len(r.Ranges)-1].Len
	if lo > off || hi < off+n || off-lo >= pageSize || hi-(off+n) >= pageSize || uint64(len(r.Data)) > n+2*pageSize {
		t.Fatalf("%s at %d: %d bytes shipped in %v", what, off, len(r.Data), r.Ranges)
	}
	t.Logf("%s: %d bytes shipped in %v", what, len(r.Data), r.Ranges)
}
