package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

const fusectlRoot = "/sys/fs/fuse/connections"

// runGrace is how long a run may last beyond its duration before the
// watchdog decides the server hangs.
const runGrace = 30 * time.Second

// watchdog aborts the FUSE connection of a mount when a run outlives its
// limit: a hung server would otherwise hold the clients' system calls (and
// the comparison) forever. Aborting makes them fail with ENOTCONN, so the run
// ends with an error and the mount can be unmounted.
type watchdog struct {
	timer   *time.Timer
	aborted chan error // receives the result of the abort, if it happened
}

// watch starts a watchdog for the FUSE mount at dir; stop it with stop().
// For a mount that is not FUSE it does nothing.
func watch(sys System, dir string, limit time.Duration) *watchdog {
	w := &watchdog{aborted: make(chan error, 1)}
	if !sys.FUSE() {
		return w
	}
	w.timer = time.AfterFunc(limit, func() { w.aborted <- abortConnection(dir) })
	return w
}

// stop stops the watchdog and says whether it aborted the connection.
func (w *watchdog) stop() error {
	if w.timer == nil || w.timer.Stop() {
		return nil
	}
	if err := <-w.aborted; err != nil {
		return fmt.Errorf("the run hung and aborting the connection failed: %w", err)
	}
	return errors.New("the run hung: the FUSE connection was aborted")
}

// abortConnection aborts the FUSE connection mounted at dir through fusectl
// (mounting fusectl if needed).
func abortConnection(dir string) error {
	e, ok, err := findMount(dir)
	if err != nil || !ok {
		return fmt.Errorf("mount at %s not found: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(fusectlRoot, "..")); err == nil {
		if entries, _ := os.ReadDir(fusectlRoot); len(entries) == 0 {
			unix.Mount("fusectl", fusectlRoot, "fusectl", 0, "")
		}
	}
	p := filepath.Join(fusectlRoot, fmt.Sprint(kernelDev(e.Major, e.Minor)), "abort")
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("abort %s: %w", p, err)
	}
	return nil
}
