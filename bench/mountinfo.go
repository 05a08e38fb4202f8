package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry = mountdev.MountInfo

// readMountinfo parses /proc/self/mountinfo.
func readMountinfo() ([]mountEntry, error) { return mountdev.ReadMountInfo() }

// findMount returns the topmost mount at point, if any.
func findMount(point string) (mountEntry, bool, error) {
	entries, err := readMountinfo()
	if err != nil {
		return mountEntry{}, false, err
	}
	var found mountEntry
	ok := false
	for _, e := range entries {
		if e.Point == point {
			found, ok = e, true // later lines are mounted on top
		}
	}
	return found, ok, nil
}

// waitMounted waits until a mount of a type starting with fsPrefix is at
// point, or until the deadline or until exited is closed.
func waitMounted(point, fsPrefix string, timeout time.Duration, exited <-chan struct{}) (mountEntry, error) {
	deadline := time.Now().Add(timeout)
	for {
		e, ok, err := findMount(point)
		if err != nil {
			return mountEntry{}, err
		}
		if ok && strings.HasPrefix(e.FSType, fsPrefix) {
			return e, nil
		}
		select {
		case <-exited:
			return mountEntry{}, errors.New("the process exited before mounting")
		default:
		}
		if time.Now().After(deadline) {
			return mountEntry{}, fmt.Errorf("not mounted at %s after %s", point, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unmountDir unmounts point, retrying while it is busy until the deadline,
// then detaching it lazily as a last resort. Not mounted is success.
func unmountDir(point string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Unmount(point, 0)
		switch {
		case err == nil, errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOENT):
			return nil // EINVAL: not a mount point (any more)
		case errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if derr := unix.Unmount(point, unix.MNT_DETACH); derr != nil && !errors.Is(derr, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %v; lazy unmount: %w", point, err, derr)
		}
		return fmt.Errorf("unmount %s: %w (detached lazily instead)", point, err)
	}
}

// baseDirPrefix names the directories a compare run mounts under:
// <tmp>/spoolfs-bench-<pid>-<random>.
const baseDirPrefix = "spoolfs-bench-"

// cleanStaleMounts lazily unmounts the mounts left under the base directory
// of a bench process that no longer runs (killed with SIGKILL), and removes
// those directories. Mounts of live bench processes are left alone. It
// returns the mount points it unmounted.
func cleanStaleMounts() ([]string, error) {
	entries, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	tmp := filepath.Clean(os.TempDir()) + "/"
	var done []string
	staleBases := map[string]bool{}
	for i := len(entries) - 1; i >= 0; i-- { // topmost first
		p := entries[i].Point
		base, ok := staleBase(tmp, p)
		if !ok {
			continue
		}
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return done, fmt.Errorf("stale mount %s: %w", p, err)
		}
		done = append(done, p)
		staleBases[base] = true
	}
	for base := range staleBases {
		os.RemoveAll(base)
	}
	return done, nil
}

// staleBase reports whether p lies under the base directory of a dead bench
// process, and returns that base directory.
func staleBase(tmp, p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, tmp+baseDirPrefix)
	if !ok {
		return "", false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return "", false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || processAlive(pid) {
		return "", false
	}
	baseName, _, _ := strings.Cut(rest, "/")
	return tmp + baseDirPrefix + baseName, true
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
