package replication

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFsyncHeld(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	if err := fsyncHeld(f); err != nil {
		t.Fatalf("fsync of a file: %v", err)
	}
	// A descriptor fsync refuses: the errno comes back, not nil.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := fsyncHeld(w); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("fsync of a pipe: %v, want EINVAL", err)
	}
	f.Close()
}
