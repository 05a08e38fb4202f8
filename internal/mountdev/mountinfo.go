package mountdev

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo (proc(5)).
type MountInfo struct {
	// Major and Minor are the filesystem's device; for FUSE, Minor is the
	// connection's number under /sys/fs/fuse/connections.
	Major, Minor uint32
	Point        string // mount point, unescaped
	FSType       string // e.g. "fuse.spoolfs", "tmpfs"
	Source       string // e.g. "spoolfs:mx1-spool"
	Opts         string // per-mount options, e.g. "rw,nosuid,nodev"
}

// IsFUSE says whether the mount is a FUSE filesystem.
func (m MountInfo) IsFUSE() bool {
	return m.FSType == "fuse" || m.FSType == "fuseblk" || strings.HasPrefix(m.FSType, "fuse.")
}

// ReadMountInfo parses the mount table of this process's mount namespace.
func ReadMountInfo() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// MountsAt returns the mounts whose mount point is dir (an absolute,
// clean path), bottom first: the last one is the one visible at dir.
func MountsAt(dir string) ([]MountInfo, error) {
	all, err := ReadMountInfo()
	if err != nil {
		return nil, err
	}
	var at []MountInfo
	for _, m := range all {
		if m.Point == dir {
			at = append(at, m)
		}
	}
	return at, nil
}

// ParseMountInfo reads lines of the form
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// (id, parent, major:minor, root, mount point, options, optional fields,
// "-", fstype, source, super options).
func ParseMountInfo(r io.Reader) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("reading the mount table: malformed line %q", sc.Text())
		}
		maj, mnr, ok := strings.Cut(f[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(mnr, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("reading the mount table: malformed device in %q", sc.Text())
		}
		out = append(out, MountInfo{
			Major:  uint32(ma),
			Minor:  uint32(mi),
			Point:  unescapeMountField(f[4]),
			Opts:   f[5],
			FSType: unescapeMountField(f[sep+1]),
			Source: unescapeMountField(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// unescapeMountField undoes the kernel's octal escapes (\040 for space,
// \011 tab, \012 newline, \134 backslash).
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
