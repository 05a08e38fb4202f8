package testsupport

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenDevFuse: the mode is open while the test runs and the lock is
// held (another holder would wait), and both end with the test.
func TestOpenDevFuse(t *testing.T) {
	RequireRoot(t, "changing the mode of /dev/fuse")
	st, err := os.Stat(devFuse)
	if err != nil {
		Unavailable(t, "no %s: %v", devFuse, err)
	}
	before := st.Mode().Perm()
	probe, err := os.Open(devFuse)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	t.Run("open", func(t *testing.T) {
		OpenDevFuse(t)
		if st, err := os.Stat(devFuse); err != nil || st.Mode().Perm() != 0o666 {
			t.Fatalf("mode during the test: %v, %v; want 0666", st.Mode().Perm(), err)
		}
		if err := unix.Flock(int(probe.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
			t.Fatalf("a second lock while the mode is open: %v; want EWOULDBLOCK", err)
		}
	})
	if st, err := os.Stat(devFuse); err != nil || st.Mode().Perm() != before {
		t.Fatalf("mode after the test: %v, %v; want %v", st.Mode().Perm(), err, before)
	}
	if err := unix.Flock(int(probe.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("the lock outlived the test: %v", err)
	}
	unix.Flock(int(probe.Fd()), unix.LOCK_UN)
}
