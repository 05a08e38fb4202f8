package launch

// The liveness probe of a mount: `spoolfs probe DIR`. A container's exec
// probe runs in the container's mount namespace, but a mount made by
// `spoolfs mount --unshare` lives in spoolfs's private one. ProbeMount
// therefore looks for the mount in this process's namespace first, then in
// the namespaces of the processes this user may inspect, and stats it through
// /proc/PID/root (the kernel resolves that path in PID's mount namespace;
// it needs the same access as ptrace's read mode, which a process has over
// its own user's processes).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// ErrNoMount is returned by ProbeMount when no process visible to this one
// has a FUSE mount at the directory.
var ErrNoMount = errors.New("launch: no FUSE mount found")

// ProbeMount checks that the FUSE mount at dir answers: a stat of its root
// shows another device than its parent, and a statfs, which the kernel never
// answers from its caches, is answered by the server, all within timeout
// (a stat alone may be answered from the kernel's attribute cache while the
// server hangs). dir is
// looked up in this process's mount namespace and then, through
// /proc/PID/root, in those of the other processes it can see (the private
// namespace of `spoolfs mount --unshare`). It returns the path it checked.
func ProbeMount(ctx context.Context, dir string, timeout time.Duration) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("launch: probe %s: %w", dir, err)
	}
	root, err := findMountRoot(dir)
	if err != nil {
		return "", err
	}
	path := root + dir
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dev, err := statDev(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return path, fmt.Errorf("launch: probe: the mount at %s did not answer within %v", path, timeout)
		}
		return path, fmt.Errorf("launch: probe: %w", err)
	}
	var parent unix.Stat_t
	if err := unix.Stat(filepath.Dir(path), &parent); err != nil {
		return path, fmt.Errorf("launch: probe: parent of %s: %w", path, err)
	}
	if dev == parent.Dev {
		return path, fmt.Errorf("launch: probe: %s is no longer a mount point", path)
	}
	if err := statfsAnswered(ctx, path); err != nil {
		if ctx.Err() != nil {
			return path, fmt.Errorf("launch: probe: the mount at %s did not answer statfs within %v", path, timeout)
		}
		return path, fmt.Errorf("launch: probe: statfs %s: %w", path, err)
	}
	return path, nil
}

// statfsAnswered runs statfs on its own goroutine (it blocks while the
// server does not answer). Any answer from the server counts, ENOSYS
// included.
func statfsAnswered(ctx context.Context, path string) error {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		done <- unix.Statfs(path, &st)
	}()
	select {
	case err := <-done:
		if errors.Is(err, unix.ENOSYS) {
			return nil
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// findMountRoot returns "" if dir is a FUSE mount in this process's
// namespace, else "/proc/PID" + "/root" of a process that has one at dir.
func findMountRoot(dir string) (string, error) {
	if hasFUSEMountAt(os.Getpid(), dir) {
		return "", nil
	}
	procs, err := procfs.AllProcs()
	if err != nil {
		return "", fmt.Errorf("launch: probe: %w", err)
	}
	self := os.Getpid()
	for _, p := range procs {
		if p.PID != self && hasFUSEMountAt(p.PID, dir) {
			return "/proc/" + strconv.Itoa(p.PID) + "/root", nil
		}
	}
	return "", fmt.Errorf("%w at %s (in this mount namespace or any process's this user can see)", ErrNoMount, dir)
}

func hasFUSEMountAt(pid int, dir string) bool {
	mounts, err := mountdev.ReadMountInfoOf(pid)
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.Point == dir && m.IsFUSE() {
			return true
		}
	}
	return false
}

// statDev stats dir on its own goroutine, so that a mount that never
// answers cannot hold the caller past ctx. Such a goroutine stays blocked
// until the mount answers or is aborted. Only for `spoolfs probe`, a
// process that does not serve the mount.
func statDev(ctx context.Context, dir string) (uint64, error) {
	type result struct {
		dev uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var st unix.Stat_t
		err := unix.Stat(dir, &st)
		done <- result{st.Dev, err}
	}()
	select {
	case r := <-done:
		return r.dev, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("stat %s: no answer", dir)
	}
}
