package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Major, Minor uint32
	Point        string
	FSType       string
	Source       string
}

// readMountinfo parses /proc/self/mountinfo.
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, ok := parseMountinfoLine(sc.Text()); ok {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// parseMountinfoLine parses "id parent maj:min root point opts [tags] - type source superopts".
func parseMountinfoLine(line string) (mountEntry, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, f := range fields {
		if f == "-" && i >= 6 {
			sep = i
			break
		}
	}
	if sep < 0 || len(fields) < sep+3 {
		return mountEntry{}, false
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	if !ok {
		return mountEntry{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return mountEntry{}, false
	}
	return mountEntry{
		Major:  uint32(ma),
		Minor:  uint32(mi),
		Point:  unescapeOctal(fields[4]),
		FSType: fields[sep+1],
		Source: unescapeOctal(fields[sep+2]),
	}, true
}

// unescapeOctal undoes the \ooo escapes of mountinfo (space, tab, newline, backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

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
