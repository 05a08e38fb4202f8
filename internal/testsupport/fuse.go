package testsupport

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// fusectlDir is where the fusectl file system lists FUSE connections.
const fusectlDir = "/sys/fs/fuse/connections"

// FUSEConn returns the connection number of the topmost FUSE mount at dir
// (its device minor: the name of its directory under fusectl), or "" when
// no FUSE file system is mounted there.
func FUSEConn(dir string) string {
	conn := ""
	for _, m := range mounts() {
		if m.point == dir && strings.HasPrefix(m.fstype, "fuse") {
			_, conn, _ = strings.Cut(m.dev, ":") // the last is the topmost
		}
	}
	return conn
}

// AbortFUSE aborts FUSE connection conn (FUSEConn) through fusectl, which
// it mounts for the occasion and unmounts again if it was not mounted: a
// process stuck on a dead mount ends, and the mount can then be removed.
// For the clean-up of a failed test, so what goes wrong is only logged.
// An empty conn does nothing.
func AbortFUSE(t interface{ Logf(string, ...any) }, conn string) {
	if conn == "" {
		return
	}
	if !fusectlMounted() {
		if err := unix.Mount("fusectl", fusectlDir, "fusectl", 0, ""); err != nil {
			t.Logf("mount fusectl on %s: %v", fusectlDir, err)
			return
		}
		defer func() { _ = unix.Unmount(fusectlDir, 0) }()
	}
	if err := os.WriteFile(filepath.Join(fusectlDir, conn, "abort"), []byte("1"), 0o200); err != nil {
		t.Logf("abort FUSE connection %s: %v", conn, err)
	}
}

// fusectlMounted says whether fusectl is mounted where AbortFUSE needs it.
func fusectlMounted() bool {
	for _, m := range mounts() {
		if m.point == fusectlDir && m.fstype == "fusectl" {
			return true
		}
	}
	return false
}

// mount is a line of /proc/self/mountinfo: what the helpers here read.
type mount struct {
	dev, point, fstype string
}

// mounts lists this process's mounts, oldest first (nil if unreadable),
// as prometheus/procfs parses /proc/self/mountinfo (it keeps the octal
// escapes: unescape undoes them).
func mounts() []mount {
	ms, err := procfs.GetMounts()
	if err != nil {
		return nil
	}
	out := make([]mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount{dev: m.MajorMinorVer, point: unescape(m.MountPoint), fstype: m.FSType})
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space...).
func unescape(s string) string {
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
