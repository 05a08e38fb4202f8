package fsactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// openFDs counts the process's open descriptors (/proc/self/fd; the
// directory's own descriptor is counted in every call alike).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}

// waitGoroutines waits until at most n goroutines run, with a generous
// deadline (the machine is shared): exited goroutines leave the count
// only once the runtime has reaped them.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	testsupport.WaitForErr(t, 30*time.Second, fmt.Sprintf("at most %d goroutines", n), func() error {
		if got := runtime.NumGoroutine(); got > n {
			return fmt.Errorf("%d goroutines still run", got)
		}
		return nil
	})
}

// TestServerCloseReleasesEverything: a Server whose ServeOps never ran (a
// mount that failed after NewServer) gives back, on Close, every
// descriptor (memfds of the snapshot's files, the waker's eventfd) and
// every goroutine (the notify workers) it took; Close twice is fine, and
// the actor answers ErrStopped afterwards.
func TestServerCloseReleasesEverything(t *testing.T) {
	h := newHarness(t, Config{})
	h.richVolume()
	snap, err := h.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h.st.Close() // its memfds are not the server's
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()

	fds, gs := openFDs(t), runtime.NumGoroutine()
	srv, err := NewServer(Config{NotifyDev: w, NotifyWorkers: 4, Watchdog: time.Second},
		&recSink{next: snap.LSN + 1}, snap)
	if err != nil {
		t.Fatal(err)
	}
	// The check means something only if the server holds descriptors
	// and goroutines: the snapshot's files are memfds, the pool runs.
	if got := openFDs(t); got < fds+10 {
		t.Fatalf("server holds %d descriptors, expected the snapshot's memfds (>= 10)", got-fds)
	}
	if got := runtime.NumGoroutine(); got < gs+4 {
		t.Fatalf("server runs %d goroutines, expected 4 notify workers", got-gs)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got > fds {
		t.Errorf("after Close %d descriptors are open, %d before NewServer", got, fds)
	}
	waitGoroutines(t, gs)
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-srv.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Ping(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("Ping after Close: %v, want ErrStopped", err)
	}
	srv.ServeOps(nil) // after Close: returns at once, reads nothing
}
