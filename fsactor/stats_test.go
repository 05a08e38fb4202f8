package fsactor

import (
	"syscall"
	"testing"
)

// TestErrnoNameKeepsCounterKeys checks that the names unix.ErrnoName gives
// are the ones the hand-written table gave before it (the counter keys
// "lookup/ENOENT" and the access log's errno field must not change for a
// dashboard or an alert rule that names them), that 0 is "other" and that
// an errno no name is known for still gets a stable key.
func TestErrnoNameKeepsCounterKeys(t *testing.T) {
	want := map[syscall.Errno]string{
		0:             "other",
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
		// Beyond the old table: names it lacked (it said "errnoN").
		syscall.ENOTCONN: "ENOTCONN", syscall.EDEADLK: "EDEADLK",
		// No errno has this number: a stable key all the same.
		syscall.Errno(4000): "errno4000",
	}
	for e, name := range want {
		if got := errnoName(e); got != name {
			t.Errorf("errnoName(%d) = %q, want %q", int(e), got, name)
		}
	}
}

// TestErrnoCountsKeys checks the counter keys errnoCounts builds: op kind
// "/" errno name, as the metrics and `spoolfs status` read them.
func TestErrnoCountsKeys(t *testing.T) {
	var s stats
	s.errs[kindLookUp][syscall.ENOENT].Add(2)
	s.errs[kindGetXattr][syscall.ENODATA].Add(1)
	got := s.errnoCounts()
	want := map[string]uint64{"lookup/ENOENT": 2, kindGetXattr.String() + "/ENODATA": 1}
	if len(got) != len(want) {
		t.Fatalf("errnoCounts() = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("errnoCounts()[%q] = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}
