package mountdev

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// MountInfo is one line of /proc/self/mountinfo (proc(5)).
type MountInfo struct {
	// Major and Minor are the filesystem's device; for FUSE, Minor is the
	// connection's number under /sys/fs/fuse/connections.
	Major, Minor uint32
	Point        string // mount point, unescaped
	FSType       string // e.g. "fuse.spoolfs", "tmpfs"
	Source       string // e.g. "spoolfs:mx1-spool"
	Opts         string // per-mount options, sorted, e.g. "nodev,nosuid,rw"
}

// IsFUSE says whether the mount is a FUSE filesystem.
func (m MountInfo) IsFUSE() bool {
	return m.FSType == "fuse" || m.FSType == "fuseblk" || strings.HasPrefix(m.FSType, "fuse.")
}

// ReadMountInfo reads the mount table of this process's mount namespace
// (/proc/self/mountinfo), parsed by prometheus/procfs.
func ReadMountInfo() ([]MountInfo, error) { return fromProcfs(procfs.GetMounts()) }

// ReadMountInfoOf reads the mount table of the mount namespace of process
// pid (/proc/PID/mountinfo).
func ReadMountInfoOf(pid int) ([]MountInfo, error) { return fromProcfs(procfs.GetProcMounts(pid)) }

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

// fromProcfs turns procfs's entries into ours: the device as numbers, the
// kernel's octal escapes undone (procfs keeps "\040" for a space), the
// per-mount options joined again (procfs gives a map: their order is the
// sorted one, not the kernel's).
func fromProcfs(ms []*procfs.MountInfo, err error) ([]MountInfo, error) {
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	out := make([]MountInfo, 0, len(ms))
	for _, m := range ms {
		maj, mnr, ok := strings.Cut(m.MajorMinorVer, ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(mnr, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("reading the mount table: malformed device %q at %s", m.MajorMinorVer, m.MountPoint)
		}
		out = append(out, MountInfo{
			Major:  uint32(ma),
			Minor:  uint32(mi),
			Point:  unescapeMountField(m.MountPoint),
			Opts:   joinOpts(m.Options),
			FSType: unescapeMountField(m.FSType),
			Source: unescapeMountField(m.Source),
		})
	}
	return out, nil
}

// joinOpts writes a mount's options as mount(8) does ("rw,nosuid,x=1"),
// sorted.
func joinOpts(opts map[string]string) string {
	parts := make([]string, 0, len(opts))
	for k, v := range opts {
		if v != "" {
			k += "=" + v
		}
		parts = append(parts, k)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
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
