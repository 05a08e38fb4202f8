package fsactor

import (
	"strconv"
	"sync/atomic"
	"syscall"
)

// opKind numbers the FUSE op types jacobsa/fuse delivers, so counters are
// array slots rather than map entries (no lock, no allocation per op). Each
// kind has its row in opTable (optable.go): its name, handler, access-log
// fields and so on.
type opKind uint8

const (
	kindUnknown opKind = iota // jacobsa's unexported unknownOp, or anything new
	kindLookUp
	kindGetAttr
	kindSetAttr
	kindForget
	kindBatchForget
	kindMkDir
	kindMkNode
	kindCreate
	kindSymlink
	kindLink
	kindRename
	kindRmDir
	kindUnlink
	kindOpenDir
	kindReadDir
	kindReadDirPlus
	kindReleaseDir
	kindOpen
	kindRead
	kindWrite
	kindFsync
	kindFlush
	kindRelease
	kindReadlink
	kindRemoveXattr
	kindGetXattr
	kindListXattr
	kindSetXattr
	kindFallocate
	kindSyncFS
	kindStatFS
	numKinds
)

func (k opKind) String() string { return opTable[k].name }

// maxErrno bounds the errno counters; Linux errnos are below 134. Larger
// values are counted in slot 0.
const maxErrno = 256

// stats counts requests per op kind and error replies per (kind, errno).
// Written by the actor and by task goroutines, read by anyone: atomics only.
type stats struct {
	ops         [numKinds]atomic.Uint64
	errs        [numKinds][maxErrno]atomic.Uint64
	replyFailed atomic.Uint64 // Reply returned an error (e.g. the request was interrupted)
	emptyReads  atomic.Uint64 // poll saw a request that was withdrawn before the read (EAGAIN)
}

// count records one answered op.
func (s *stats) count(k opKind, errno syscall.Errno) {
	s.ops[k].Add(1)
	if errno != 0 {
		if errno >= maxErrno {
			errno = 0
		}
		s.errs[k][errno].Add(1)
	}
}

// opCounts returns the non-zero request counters by op name.
func (s *stats) opCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for k := range numKinds {
		if n := s.ops[k].Load(); n != 0 {
			m[k.String()] = n
		}
	}
	return m
}

// errnoCounts returns the non-zero error counters keyed "op/ERRNO"
// (e.g. "lookup/ENOENT"); errnos beyond the table are "op/other".
func (s *stats) errnoCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for k := range numKinds {
		for e := range maxErrno {
			if n := s.errs[k][e].Load(); n != 0 {
				m[k.String()+"/"+errnoName(syscall.Errno(e))] = n
			}
		}
	}
	return m
}

// errnoName is the symbolic name of e (ENOENT, EIO...), "other" for 0.
func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "other"
	}
	if n, ok := errnoNames[e]; ok {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}

// errnoNames covers the errnos a filesystem answers with.
var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.EINTR: "EINTR",
	syscall.EIO: "EIO", syscall.ENXIO: "ENXIO", syscall.E2BIG: "E2BIG",
	syscall.EBADF: "EBADF", syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM",
	syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY",
	syscall.EEXIST: "EEXIST", syscall.EXDEV: "EXDEV", syscall.ENODEV: "ENODEV",
	syscall.ENOTDIR: "ENOTDIR", syscall.EISDIR: "EISDIR", syscall.EINVAL: "EINVAL",
	syscall.ENFILE: "ENFILE", syscall.EMFILE: "EMFILE", syscall.EFBIG: "EFBIG",
	syscall.ENOSPC: "ENOSPC", syscall.ESPIPE: "ESPIPE", syscall.EROFS: "EROFS",
	syscall.EMLINK: "EMLINK", syscall.ERANGE: "ERANGE",
	syscall.ENAMETOOLONG: "ENAMETOOLONG", syscall.ENOSYS: "ENOSYS",
	syscall.ENOTEMPTY: "ENOTEMPTY", syscall.ELOOP: "ELOOP",
	syscall.ENODATA: "ENODATA", syscall.EOVERFLOW: "EOVERFLOW",
	syscall.EOPNOTSUPP: "EOPNOTSUPP", syscall.ETIMEDOUT: "ETIMEDOUT",
	syscall.ESTALE: "ESTALE", syscall.EDQUOT: "EDQUOT",
}
