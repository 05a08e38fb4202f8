package e2e

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteLimitReported: spoolfs holds data up to 4 GiB per file (fsactor
// maxDataEnd: a data record carries a file's whole content), while sizes
// may go further. A write past the limit must never be lost silently: the
// writer learns it from pwrite (no write-back cache) or from fsync and
// close (write-back cache), as EFBIG.
func TestWriteLimitReported(t *testing.T) {
	if *flagSubject != "spoolfs" {
		t.Skip("a limit of spoolfs; tmpfs has none")
	}
	for _, args := range [][]string{nil, {"--writeback-cache=false"}} {
		t.Run(fmtArgs(args), func(t *testing.T) {
			pair := newPairArgs(t, args...)
			pair.deadline(t, defaultDeadline)
			_, dir := pair.dirs(t)
			fd, err := unix.Open(dir+"/big", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := unix.Pwrite(fd, []byte("past the limit"), 5<<30)
			ferr := unix.Fsync(fd)
			cerr := unix.Close(fd)
			t.Logf("pwrite: %s, fsync: %s, close: %s", errName(werr), errName(ferr), errName(cerr))
			if errnoOf(werr) != unix.EFBIG && errnoOf(ferr) != unix.EFBIG && errnoOf(cerr) != unix.EFBIG {
				t.Fatalf("a write at 5 GiB was accepted without EFBIG at pwrite, fsync or close")
			}
			// Without fsync, close alone must say it: EFBIG, or EIO when the
			// kernel reports a failed write-back at flush (it keeps only
			// "EIO or ENOSPC" per file for that).
			fd, err = unix.Open(dir+"/big2", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			_, werr = unix.Pwrite(fd, []byte("past the limit"), 5<<30)
			cerr = unix.Close(fd)
			t.Logf("no fsync: pwrite: %s, close: %s", errName(werr), errName(cerr))
			if errnoOf(werr) != unix.EFBIG && errnoOf(cerr) != unix.EFBIG && errnoOf(cerr) != unix.EIO {
				t.Errorf("a write at 5 GiB then close gave no EFBIG or EIO")
			}
			_ = unix.Syncfs(pair.proc.rootFd(t)) // take the volume's pending writeback error
		})
	}
}

func fmtArgs(args []string) string {
	if len(args) == 0 {
		return "defaults"
	}
	return args[0]
}
