package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/spoolfs/spoolfs/fsactor"
)

// MountOptions says which volume to mount where, and how.
type MountOptions struct {
	Volume string // volume name: shown as spoolfs:VOLUME in /proc/mounts
	Dir    string // mount point (an existing directory)

	ReadOnly bool // -o ro: MS_RDONLY, and every mutation answers EROFS
	// Follower: the volume follows its primary (fsactor Config.Follower):
	// every mutation answers EROFS until it is promoted. Not MS_RDONLY:
	// promotion turns it read-write without an unmount.
	Follower   bool
	AllowOther bool // -o allow_other: users other than the mounter may use it
	Sync       bool // -o sync: every mutation waits until its record is durable
	NoExec     bool // -o noexec: MS_NOEXEC

	// EntryTimeout and AttrTimeout bound the kernel's name and attribute
	// caches (fsactor.Config). Long is right: the primary is the only
	// writer, and a follower tells the kernel of every remote change
	// (notify_delete, inval_inode).
	EntryTimeout time.Duration
	AttrTimeout  time.Duration

	// Root directory of a new (empty) volume.
	RootUid, RootGid uint32
	RootMode         uint32

	Capacity     uint64        // bytes; 0: derived from the machine
	MaxInodes    uint64        // 0: derived from the machine
	FlushTimeout time.Duration // bound on waits for durability (EIO after)
	AccessLog    bool          // one log line per FUSE op
	// Watchdog: how long the actor may stay in one step while the kernel
	// waits before its goroutines' stacks are logged (fsactor.Config).
	Watchdog time.Duration

	Kernel KernelOptions

	// UnmountTimeout bounds the retries of a busy unmount before spoolfs
	// falls back to a lazy unmount.
	UnmountTimeout time.Duration
}

// KernelOptions are the FUSE connection knobs negotiated at INIT that
// matter for speed (jacobsa/fuse MountConfig). The benchmark tries them.
type KernelOptions struct {
	WritebackCache bool            // kernel write-back page cache (batches small writes)
	Readdirplus    ReaddirplusMode // READDIRPLUS: entries with attributes, fewer LOOKUPs
	AsyncReads     bool            // the kernel may issue several READs of a file at once
	ParallelDirOps bool            // concurrent LOOKUP/READDIR in one directory
	MaxWrite       uint32          // largest WRITE payload in bytes; 0: jacobsa's default
	DebugFUSE      bool            // jacobsa's own per-op debug log (very noisy)
}

// ReaddirplusMode says whether and how the kernel uses READDIRPLUS.
type ReaddirplusMode string

// The READDIRPLUS modes.
const (
	ReaddirplusOff  ReaddirplusMode = "off"  // plain READDIR
	ReaddirplusOn   ReaddirplusMode = "on"   // always READDIRPLUS
	ReaddirplusAuto ReaddirplusMode = "auto" // the kernel chooses (FUSE_READDIRPLUS_AUTO)
)

// Set implements pflag.Value.
func (m *ReaddirplusMode) Set(s string) error {
	switch v := ReaddirplusMode(strings.ToLower(s)); v {
	case ReaddirplusOff, ReaddirplusOn, ReaddirplusAuto:
		*m = v
		return nil
	}
	return fmt.Errorf("%q is not one of off, on, auto", s)
}

// String implements pflag.Value.
func (m *ReaddirplusMode) String() string { return string(*m) }

// Type implements pflag.Value.
func (m *ReaddirplusMode) Type() string { return "off|on|auto" }

// DefaultMountOptions are the defaults of `spoolfs mount`. The kernel
// knobs keep jacobsa/fuse's defaults until the benchmark says otherwise.
func DefaultMountOptions() MountOptions {
	return MountOptions{
		EntryTimeout:   PrimaryCacheTimeout,
		AttrTimeout:    PrimaryCacheTimeout,
		RootMode:       0o755,
		FlushTimeout:   30 * time.Second,
		UnmountTimeout: 10 * time.Second,
		Watchdog:       fsactor.DefaultWatchdog,
		Kernel: KernelOptions{
			WritebackCache: true,
			Readdirplus:    ReaddirplusOff,
		},
	}
}

// Replicated turns the defaults of o into those of a replicated mount:
// no kernel write-back cache. With it the kernel keeps mtime and ctime
// itself and sends them back in SETATTRs — after writes, after a rename,
// after an unlink — and each is a record shipped to every replica that the
// next close of that file must wait for: a spool message cost four
// durability waits instead of three and five records more
// (docs/benchmarks.md, "Replicated"). On --local, records cost nothing and
// the cache pays for itself.
func (o *MountOptions) Replicated() {
	o.Kernel.WritebackCache = false
}

// PrimaryCacheTimeout is the kernel's entry and attribute cache lifetime
// on a primary: it is the only writer, so nothing goes stale behind it.
const PrimaryCacheTimeout = time.Hour

// FollowerCacheTimeout is the same lifetime on a follower (issue 11: 60 s).
// Remote changes reach the kernel as notify_delete and inval_inode, so the
// caches stay true without it; the bound is there for a note the kernel
// could not take (ENOENT answers are benign; a full notify queue keeps the
// note in its coalescing overflow set, never drops it: fsactor/notify.go):
// nothing stale outlives a minute.
const FollowerCacheTimeout = time.Minute

// Follow makes o a follower's options: Follower set, ReadOnly cleared (the
// mount must not be MS_RDONLY for promotion to turn it read-write; the
// actor answers EROFS meanwhile).
func (o *MountOptions) Follow() {
	o.Follower, o.ReadOnly = true, false
}

// IsFollower says whether options (as -o) with follow make a follower:
// follow, or `ro` among the options (a read-only mount of a replicated
// volume is a follower). Bad options are reported by ApplyOptionString.
func IsFollower(follow bool, options []string) bool {
	var o MountOptions
	for _, s := range options {
		_ = ApplyOptionString(&o, s)
	}
	return follow || o.ReadOnly
}

var volumeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateVolumeName checks a volume name: 1 to 63 letters, digits, '.',
// '_' or '-', starting with a letter or digit (it appears in mount tables,
// file names and metrics).
func ValidateVolumeName(name string) error {
	if !volumeNameRE.MatchString(name) {
		return fmt.Errorf("volume name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// ApplyOptionString applies a mount(8)-style comma-separated option list
// (`-o allow_other,ro,entry_timeout=10s`) to o. Options not listed below
// are an error naming them:
//
//	allow_other            other users may use the mount
//	ro, rw                 read-only or read-write (the default)
//	sync, async            every mutation waits for durability, or not (the default)
//	noexec, exec           MS_NOEXEC or not (the default)
//	nosuid, nodev          always on; accepted for fstab compatibility
//	default_permissions    always on (the kernel checks permissions)
//	entry_timeout=DUR      kernel name cache lifetime (Go duration or seconds)
//	attr_timeout=DUR       kernel attribute cache lifetime
func ApplyOptionString(o *MountOptions, s string) error {
	for _, opt := range strings.Split(s, ",") {
		if opt == "" {
			continue
		}
		if err := applyOption(o, opt); err != nil {
			return err
		}
	}
	return nil
}

func applyOption(o *MountOptions, opt string) error {
	key, val, hasVal := strings.Cut(opt, "=")
	flags := map[string]func(){
		"allow_other": func() { o.AllowOther = true },
		"ro":          func() { o.ReadOnly = true },
		"rw":          func() { o.ReadOnly = false },
		"sync":        func() { o.Sync = true },
		"async":       func() { o.Sync = false },
		"noexec":      func() { o.NoExec = true },
		"exec":        func() { o.NoExec = false },
		"nosuid":      func() {},
		"nodev":       func() {},

		"writeback_cache":   func() { o.Kernel.WritebackCache = true },
		"nowriteback_cache": func() { o.Kernel.WritebackCache = false },

		"default_permissions": func() {},
	}
	if set, ok := flags[key]; ok {
		if hasVal {
			return fmt.Errorf("mount option %q takes no value", key)
		}
		set()
		return nil
	}
	switch key {
	case "entry_timeout", "attr_timeout":
		d, err := parseOptDuration(val)
		if err != nil || !hasVal {
			return fmt.Errorf("mount option %s=%q: want a duration like 30s or 1h (or seconds)", key, val)
		}
		if key == "entry_timeout" {
			o.EntryTimeout = d
		} else {
			o.AttrTimeout = d
		}
		return nil
	}
	return fmt.Errorf("unknown mount option %q (known: allow_other, ro, rw, sync, async, noexec, exec, nosuid, nodev, default_permissions, entry_timeout=DUR, attr_timeout=DUR)", key)
}

// parseOptDuration reads a Go duration ("30s") or, as libfuse does, a
// number of seconds ("1.5").
func parseOptDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// ParseBytes reads a size: a plain number of bytes, or a number with a
// decimal (k, M, G, T, P, E, with or without B) or binary (Ki, Mi...,
// with or without B) unit, case-insensitive, with or without a space:
// "1GiB", "512M", "1.5G", "64 MiB". go-humanize parses it; the errors say
// what is wanted.
func ParseBytes(s string) (uint64, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	switch {
	case err != nil && strings.HasPrefix(err.Error(), "too large"):
		return 0, fmt.Errorf("size %q: too large", s)
	case err != nil:
		return 0, fmt.Errorf("size %q: want bytes, e.g. 1073741824, 1GiB or 512M", s)
	}
	return n, nil
}

// ByteSize is a pflag.Value reading sizes with ParseBytes.
type ByteSize uint64

// Set implements pflag.Value.
func (b *ByteSize) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// String implements pflag.Value.
func (b *ByteSize) String() string { return strconv.FormatUint(uint64(*b), 10) }

// Type implements pflag.Value.
func (b *ByteSize) Type() string { return "bytes" }
