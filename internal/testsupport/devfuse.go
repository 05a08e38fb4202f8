package testsupport

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// devFuse is the FUSE device whose mode OpenDevFuse changes.
const devFuse = "/dev/fuse"

// OpenDevFuse makes /dev/fuse usable by every user for the rest of the test
// (an unprivileged mount needs it; the machine keeps it 0600) and restores
// its mode at the end. go test runs packages in parallel processes, and
// more than one package has such a test: each holds an exclusive flock(2)
// on the device itself while the mode is open, so one test never restores
// 0600 while another's unprivileged mount is starting, and nothing is left
// behind (no lock file). The lock is advisory: opening the device to mount
// is not affected.
func OpenDevFuse(t testing.TB) {
	t.Helper()
	f, err := os.Open(devFuse)
	if err != nil {
		t.Fatalf("open %s to lock its mode: %v", devFuse, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", devFuse, err)
	}
	st, err := os.Stat(devFuse)
	if err != nil {
		f.Close() // closing releases the lock
		t.Fatal(err)
	}
	mode := st.Mode().Perm()
	if err := os.Chmod(devFuse, 0o666); err != nil {
		f.Close()
		t.Fatalf("make %s usable by everyone: %v", devFuse, err)
	}
	t.Cleanup(func() {
		if err := os.Chmod(devFuse, mode); err != nil {
			t.Errorf("restore the mode of %s to %v: %v", devFuse, mode, err)
		}
		f.Close()
	})
}
