package fsactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// TestErrnoOf lists every mapping of the one errno mapping: what a
// handler, a memfd system call and a Sink's Wait can return, and the errno
// the FUSE reply carries for it (it replaced errnoOf, toErrno, waitErrno).
func TestErrnoOf(t *testing.T) {
	ctxDone, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		// Handlers: a bare errno is the answer.
		{"ENOENT", syscall.ENOENT, syscall.ENOENT},
		{"EEXIST", syscall.EEXIST, syscall.EEXIST},
		{"ENOTEMPTY", syscall.ENOTEMPTY, syscall.ENOTEMPTY},
		{"EROFS", syscall.EROFS, syscall.EROFS},
		{"ENOSYS", syscall.ENOSYS, syscall.ENOSYS},
		{"ENODATA", syscall.ENODATA, syscall.ENODATA},
		{"ERANGE", syscall.ERANGE, syscall.ERANGE},
		{"EFBIG", syscall.EFBIG, syscall.EFBIG},
		{"EINVAL", syscall.EINVAL, syscall.EINVAL},
		{"EOPNOTSUPP", syscall.EOPNOTSUPP, syscall.EOPNOTSUPP},
		{"EIO", syscall.EIO, syscall.EIO},
		// memfd system calls: out of descriptors, out of memory.
		{"EMFILE", syscall.EMFILE, syscall.ENOSPC},
		{"ENFILE", syscall.ENFILE, syscall.ENOSPC},
		{"ENOMEM", syscall.ENOMEM, syscall.ENOSPC},
		{"ENOSPC", syscall.ENOSPC, syscall.ENOSPC},
		{"EDQUOT", syscall.EDQUOT, syscall.ENOSPC},
		{"wrapped ENOMEM", os.NewSyscallError("fallocate", syscall.ENOMEM), syscall.ENOSPC},
		{"wrapped EFBIG", fmt.Errorf("pwrite: %w", syscall.EFBIG), syscall.EFBIG},
		{"errno 0", syscall.Errno(0), syscall.EIO},
		{"no errno", errors.New("something"), syscall.EIO},
		// A Sink's Wait: every failure is EIO, whatever it wraps.
		{"ErrNotDurable", ErrNotDurable, syscall.EIO},
		{"ErrFenced", fmt.Errorf("term 7: %w", ErrFenced), syscall.EIO},
		{"ErrNotDurable around an errno", fmt.Errorf("%w: dial: %w", ErrNotDurable, syscall.ECONNREFUSED), syscall.EIO},
		{"ErrFenced around an errno", fmt.Errorf("%w: %w", ErrFenced, syscall.ENOENT), syscall.EIO},
		{"flush timeout", context.DeadlineExceeded, syscall.EIO},
		{"flush timeout around an errno", fmt.Errorf("%w: %w", context.DeadlineExceeded, syscall.EAGAIN), syscall.EIO},
		{"cancelled", ctxDone.Err(), syscall.EIO},
	}
	for _, c := range cases {
		if got := errnoOf(c.err); got != c.want {
			t.Errorf("%s: errnoOf(%v) = %v (%d), want %v (%d)", c.name, c.err, got, got, c.want, c.want)
		}
	}
}

// TestReplyErr: what the connection gets is nil for success and the bare
// errno otherwise (jacobsa/fuse answers EIO for anything not a bare Errno),
// without allocating.
func TestReplyErr(t *testing.T) {
	if replyErr(0) != nil {
		t.Fatal("replyErr(0) is not nil")
	}
	if e, ok := replyErr(syscall.ENOENT).(syscall.Errno); !ok || e != syscall.ENOENT {
		t.Fatalf("replyErr(ENOENT) = %#v", replyErr(syscall.ENOENT))
	}
	var sink error
	if n := testing.AllocsPerRun(100, func() { sink = replyErr(syscall.ENOSPC) }); n != 0 {
		t.Fatalf("replyErr allocates %v times", n)
	}
	_ = sink
}
