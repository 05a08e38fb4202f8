package mountdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// statTimeout bounds the stat of a mount point: a FUSE mount whose server
// is alive but stuck would block it forever.
const statTimeout = 5 * time.Second

// maxStale bounds how many stacked stale mounts are detached at one point.
const maxStale = 8

// PrepareMountPoint checks that dir can be mounted on and returns its
// absolute path with symlinks resolved. A missing path, a non-directory or
// a live FUSE mount already there is an error in one line; a stale FUSE
// mount (its server died: stat answers ENOTCONN) is lazily unmounted,
// logged, and replaced.
//
// Mounting over a directory that is itself the mount point of another kind
// of filesystem (a container volume, a tmpfs) is allowed: spoolfs only
// refuses to stack on FUSE, which is what running it twice would do.
func PrepareMountPoint(dir string, log *zap.Logger) (string, error) {
	abs, err := resolveMountPoint(dir)
	if err != nil {
		return "", err
	}
	for i := 0; ; i++ {
		err := statDir(abs)
		if !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) {
			// A live FUSE mount is "busy" even if it answers stat with an
			// error of its own.
			if busy := refuseFUSEMount(abs); busy != nil {
				return "", busy
			}
			if err != nil {
				return "", err
			}
			return abs, nil
		}
		if i == maxStale {
			return "", fmt.Errorf("mount point %s: still not connected after detaching %d stale mounts", abs, i)
		}
		if err := ReplaceStale(abs, log); err != nil {
			return "", err
		}
	}
}

// resolveMountPoint makes dir absolute and resolves symlinks. The last
// component is resolved only if it can be (a stale mount cannot be
// stat'ed; it is never a symlink then).
func resolveMountPoint(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("mount point %s: no such directory", abs)
	}
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", abs, err)
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// Dead says whether the mount at dir lost its server: its connection
// ended or was aborted while still mounted, and it answers ENOTCONN.
func Dead(dir string) bool {
	err := statDir(dir)
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// statDir checks, with a deadline, that dir is a directory that answers.
func statDir(dir string) error {
	type result struct {
		st  unix.Stat_t
		err error
	}
	done := make(chan result, 1)
	go func() { // may outlive us if the mount hangs; the process reports and exits
		var r result
		// statfs first: FUSE never answers it from a cache, so it finds a
		// dead server (ENOTCONN) where stat may answer from cached
		// attributes.
		var sfs unix.Statfs_t
		if r.err = unix.Statfs(dir, &sfs); r.err == nil {
			r.err = unix.Stat(dir, &r.st)
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(statTimeout):
		return fmt.Errorf("mount point %s is busy: a mount there does not answer (stat took over %v)", dir, statTimeout)
	}
	switch {
	case errors.Is(r.err, unix.ENOENT):
		return fmt.Errorf("mount point %s: no such directory", dir)
	case errors.Is(r.err, unix.ENOTCONN), errors.Is(r.err, unix.ECONNABORTED):
		return fmt.Errorf("mount point %s: %w", dir, r.err)
	case r.err != nil:
		return fmt.Errorf("mount point %s: %w", dir, r.err)
	case r.st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("mount point %s: not a directory", dir)
	}
	return nil
}

// refuseFUSEMount fails if a live FUSE filesystem is mounted at dir.
func refuseFUSEMount(dir string) error {
	at, err := MountsAt(dir)
	if err != nil {
		return err
	}
	if len(at) == 0 {
		return nil
	}
	if top := at[len(at)-1]; top.IsFUSE() {
		return fmt.Errorf("mount point %s is busy: already mounted (%s %s)", dir, top.FSType, top.Source)
	}
	return nil
}

// ReplaceStale detaches the dead mount at dir and logs what it was.
func ReplaceStale(dir string, log *zap.Logger) error {
	what := "unknown filesystem"
	if at, err := MountsAt(dir); err == nil && len(at) > 0 {
		top := at[len(at)-1]
		what = top.FSType + " " + top.Source
	}
	how, err := Detach(dir)
	if err != nil {
		return fmt.Errorf("mount point %s holds a stale mount (%s, its server is gone) that could not be removed: %w", dir, what, err)
	}
	log.Warn("removed a stale mount left by a dead server",
		zap.String("dir", dir), zap.String("was", what), zap.String("how", how))
	return nil
}
