package fsactor

import (
	"context"
	"errors"
	"syscall"
)

// errnoOf is the one errno mapping of fsactor: it turns any error a
// handler, a memfd system call or a Sink returns into the errno the FUSE
// reply carries (and the one counted and logged). In order:
//   - nil answers 0 (success);
//   - a Sink's failure (ErrFenced, ErrNotDurable) and a context's end (the
//     flush timeout, DeadlineExceeded, or Canceled) answer EIO, whatever
//     else they wrap: the op's change is applied, its durability unknown;
//   - an errno (bare or wrapped) is the kernel's own answer (EFBIG,
//     EINVAL, EOPNOTSUPP, ENOENT, ...), passed through, except that
//     running out of descriptors (EMFILE, ENFILE) or of memory (ENOMEM,
//     and ENOSPC, EDQUOT from shmem) answers ENOSPC: the volume is full
//     (limits.go says why not EMFILE), and errno 0 answers EIO;
//   - anything else answers EIO.
//
// Handlers call it where a memfd system call fails; the loop calls it on
// every reply, a handler's or a task's. node wraps replication's errors
// into ErrFenced and ErrNotDurable before they reach it (node/replsink.go).
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, ErrFenced), errors.Is(err, ErrNotDurable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return syscall.EIO
	case !errors.As(err, &e):
		return syscall.EIO
	}
	switch e {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.ENOSPC, syscall.EDQUOT:
		return syscall.ENOSPC
	case 0:
		return syscall.EIO
	}
	return e
}

// replyErr is the error handed to the connection for errno: nil for 0,
// the bare errno otherwise (jacobsa/fuse reads only a bare syscall.Errno;
// errnos are below 256, so the conversion does not allocate).
func replyErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}
