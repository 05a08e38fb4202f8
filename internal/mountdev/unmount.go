package mountdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sys/unix"
)

// ErrNotMounted: nothing is mounted there (any more).
var ErrNotMounted = errors.New("not mounted")

// unmountOnce tries one plain unmount of dir. It answers unix.EBUSY (wrapped)
// while the mount is in use and ErrNotMounted when it is already gone.
func unmountOnce(dir string, m Method) error {
	if m == MethodDirect {
		err := unix.Unmount(dir, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return ErrNotMounted
		case !errors.Is(err, unix.EPERM):
			return fmt.Errorf("umount %s: %w", dir, err)
		}
		// Not permitted after all (a lost capability): let the helper try.
	}
	return fusermountUnmount(dir, false)
}

// Detach lazily unmounts dir (MNT_DETACH: gone from the namespace now,
// torn down when its last user lets go) and says how it did it.
func Detach(dir string) (string, error) {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	switch {
	case err == nil:
		return "umount2(MNT_DETACH)", nil
	case errors.Is(err, unix.EINVAL):
		return "", ErrNotMounted
	case !errors.Is(err, unix.EPERM):
		return "", fmt.Errorf("lazy umount %s: %w", dir, err)
	}
	if err := fusermountUnmount(dir, true); err != nil {
		return "", err
	}
	return "fusermount3 -u -z", nil
}

// fusermountUnmount runs `fusermount3 -u [-z] DIR` and maps its complaints
// to EBUSY and ErrNotMounted.
func fusermountUnmount(dir string, lazy bool) error {
	path, err := fusermountPath()
	if err != nil {
		return fmt.Errorf("umount %s: not permitted, and fusermount3 %w", dir, err)
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	var out bytes.Buffer
	cmd := exec.Command(path, append(args, "--", dir)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := oneLine(out.String())
		switch {
		case strings.Contains(msg, "busy"):
			return fmt.Errorf("umount %s: %w (%s)", dir, unix.EBUSY, msg)
		case strings.Contains(msg, "not found in") || strings.Contains(msg, "Invalid argument") || strings.Contains(msg, "not mounted"):
			return ErrNotMounted
		}
		return fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, msg)
	}
	return nil
}

// Unmount unmounts dir, retrying while it is busy until ctx ends;
// then it detaches it lazily. lazy says whether it had to.
func Unmount(ctx context.Context, dir string, m Method) (lazy bool, err error) {
	bo := &backoff.ExponentialBackOff{InitialInterval: 20 * time.Millisecond, Multiplier: 2, MaxInterval: 500 * time.Millisecond}
	for {
		err := unmountOnce(dir, m)
		if err == nil || errors.Is(err, ErrNotMounted) {
			return false, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return false, err
		}
		select {
		case <-ctx.Done():
			if _, err := Detach(dir); err != nil && !errors.Is(err, ErrNotMounted) {
				return false, err
			}
			return true, nil
		case <-time.After(bo.NextBackOff()):
		}
	}
}
