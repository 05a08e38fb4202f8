package fsactor

import (
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/jacobsa/fuse/fuseops"
)

// opKind numbers the FUSE op types jacobsa/fuse delivers, so counters are
// array slots rather than map entries (no lock, no allocation per op).
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

// kindNames are the names OpCounts and the access log use: the kernel's
// request names, lower case.
var kindNames = [numKinds]string{
	kindUnknown: "unknown", kindLookUp: "lookup", kindGetAttr: "getattr",
	kindSetAttr: "setattr", kindForget: "forget", kindBatchForget: "batch_forget",
	kindMkDir: "mkdir", kindMkNode: "mknod", kindCreate: "create",
	kindSymlink: "symlink", kindLink: "link", kindRename: "rename",
	kindRmDir: "rmdir", kindUnlink: "unlink", kindOpenDir: "opendir",
	kindReadDir: "readdir", kindReadDirPlus: "readdirplus",
	kindReleaseDir: "releasedir", kindOpen: "open", kindRead: "read",
	kindWrite: "write", kindFsync: "fsync", kindFlush: "flush",
	kindRelease: "release", kindReadlink: "readlink",
	kindRemoveXattr: "removexattr", kindGetXattr: "getxattr",
	kindListXattr: "listxattr", kindSetXattr: "setxattr",
	kindFallocate: "fallocate", kindSyncFS: "syncfs", kindStatFS: "statfs",
}

func (k opKind) String() string { return kindNames[k] }

// createsInode says whether the op makes a new inode, the only ops for which
// the loop looks up the caller's gid (gid.go).
func (k opKind) createsInode() bool {
	return k == kindMkDir || k == kindMkNode || k == kindCreate || k == kindSymlink
}

// classify names op's kind and returns its OpContext (nil for statfs, whose
// op carries none, and for unknown ops). The one long switch of the loop:
// one line per op type.
func classify(op any) (opKind, *fuseops.OpContext) {
	switch o := op.(type) {
	case *fuseops.LookUpInodeOp:
		return kindLookUp, &o.OpContext
	case *fuseops.GetInodeAttributesOp:
		return kindGetAttr, &o.OpContext
	case *fuseops.SetInodeAttributesOp:
		return kindSetAttr, &o.OpContext
	case *fuseops.ForgetInodeOp:
		return kindForget, &o.OpContext
	case *fuseops.BatchForgetOp:
		return kindBatchForget, &o.OpContext
	case *fuseops.MkDirOp:
		return kindMkDir, &o.OpContext
	case *fuseops.MkNodeOp:
		return kindMkNode, &o.OpContext
	case *fuseops.CreateFileOp:
		return kindCreate, &o.OpContext
	case *fuseops.CreateSymlinkOp:
		return kindSymlink, &o.OpContext
	case *fuseops.CreateLinkOp:
		return kindLink, &o.OpContext
	case *fuseops.RenameOp:
		return kindRename, &o.OpContext
	case *fuseops.RmDirOp:
		return kindRmDir, &o.OpContext
	case *fuseops.UnlinkOp:
		return kindUnlink, &o.OpContext
	case *fuseops.OpenDirOp:
		return kindOpenDir, &o.OpContext
	case *fuseops.ReadDirOp:
		return kindReadDir, &o.OpContext
	case *fuseops.ReadDirPlusOp:
		return kindReadDirPlus, &o.OpContext
	case *fuseops.ReleaseDirHandleOp:
		return kindReleaseDir, &o.OpContext
	case *fuseops.OpenFileOp:
		return kindOpen, &o.OpContext
	case *fuseops.ReadFileOp:
		return kindRead, &o.OpContext
	case *fuseops.WriteFileOp:
		return kindWrite, &o.OpContext
	case *fuseops.SyncFileOp:
		return kindFsync, &o.OpContext
	case *fuseops.FlushFileOp:
		return kindFlush, &o.OpContext
	case *fuseops.ReleaseFileHandleOp:
		return kindRelease, &o.OpContext
	case *fuseops.ReadSymlinkOp:
		return kindReadlink, &o.OpContext
	case *fuseops.RemoveXattrOp:
		return kindRemoveXattr, &o.OpContext
	case *fuseops.GetXattrOp:
		return kindGetXattr, &o.OpContext
	case *fuseops.ListXattrOp:
		return kindListXattr, &o.OpContext
	case *fuseops.SetXattrOp:
		return kindSetXattr, &o.OpContext
	case *fuseops.FallocateOp:
		return kindFallocate, &o.OpContext
	case *fuseops.SyncFSOp:
		return kindSyncFS, &o.OpContext
	case *fuseops.StatFSOp:
		return kindStatFS, nil
	}
	return kindUnknown, nil
}

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
