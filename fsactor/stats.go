package fsactor

import (
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
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

// errnoName is the symbolic name of e (ENOENT, EIO...), "other" for 0, as
// x/sys/unix names it (unix.ErrnoName: the kernel's own list, so every errno
// a filesystem can answer has its name, with no table of ours to keep up);
// "errnoN" for a number it does not know. One exception: x/sys names 95
// ENOTSUP (its alias on Linux), where the counters, the access log, the
// dashboards and the alert rules have always said EOPNOTSUPP, the name
// getxattr(2) and the FUSE protocol use: that key stays.
func errnoName(e syscall.Errno) string {
	switch e {
	case 0:
		return "other"
	case syscall.EOPNOTSUPP:
		return "EOPNOTSUPP"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}
