package fsactor

import (
	"errors"
	"syscall"
)

// errnoOf is the one place where an error becomes the errno a FUSE op
// replies with. Errors come from system calls on memfds (memfd_create,
// pread, pwrite, ftruncate, fallocate, fstat, lseek):
//   - running out of descriptors (EMFILE, ENFILE) answers EMFILE;
//   - running out of memory (ENOMEM, and ENOSPC, EDQUOT from shmem) answers
//     ENOSPC: the volume is full;
//   - anything else is the kernel's own answer (EFBIG, EINVAL,
//     EOPNOTSUPP, ...), passed through;
//   - an error that carries no errno answers EIO.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if !errors.As(err, &e) {
		return syscall.EIO
	}
	switch e {
	case syscall.EMFILE, syscall.ENFILE:
		return syscall.EMFILE
	case syscall.ENOMEM, syscall.ENOSPC, syscall.EDQUOT:
		return syscall.ENOSPC
	case 0:
		return syscall.EIO
	}
	return e
}
