package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/samples/memfs"
	"golang.org/x/sys/unix"
)

// The kinds of system a compare run can mount.
const (
	KindTmpfs   = "tmpfs"
	KindMemfs   = "memfs"
	KindSpoolfs = "spoolfs"
)

const (
	mountTimeout   = 15 * time.Second
	unmountTimeout = 10 * time.Second
)

// System is one filesystem under test. Mount mounts it at an existing empty
// directory; Unmount undoes it and may be called more than once.
type System interface {
	Name() string
	Kind() string
	FUSE() bool
	Mount(ctx context.Context, dir string) error
	Unmount() error
	// Describe says how the system was mounted, for the report.
	Describe() string
}

// SystemSpec names a system to build: its kind, the name it has in the
// report, and for spoolfs the extra mount flags.
type SystemSpec struct {
	Name string
	Kind string
	Args []string // spoolfs only: appended to `spoolfs mount --local VOLUME DIR`
}

// ParseVariant parses "NAME:ARGS" (e.g. "spoolfs-nowb:--writeback-cache=false")
// into a spoolfs system spec; ARGS is split on white space. Leading words
// of the form UPPER_CASE=value set the child's environment instead
// (e.g. "spoolfs-p1:GOMAXPROCS=1"), and a following word @PATH runs another
// spoolfs binary (e.g. "spoolfs-new:@/tmp/spoolfs-new").
func ParseVariant(s string) (SystemSpec, error) {
	name, args, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, "/ ") {
		return SystemSpec{}, fmt.Errorf("variant %q: want NAME:ARGS, e.g. spoolfs-nowb:--writeback-cache=false", s)
	}
	return SystemSpec{Name: name, Kind: KindSpoolfs, Args: strings.Fields(args)}, nil
}

// The knobs a memfs variant may turn (ParseMemfsVariant).
const (
	MemfsWriteback      = "writeback"              // enable the kernel's writeback cache
	MemfsNoDefaultPerms = "no-default-permissions" // no default_permissions: no permission checks at all
	MemfsProcess        = "process"                // serve it from a child process (spoolfs bench serve-memfs)
)

// ParseMemfsVariant parses "NAME:KNOB,KNOB" (knobs: writeback,
// no-default-permissions, process) into a memfs system spec, to measure what a mount
// option costs with a server other than spoolfs.
func ParseMemfsVariant(s string) (SystemSpec, error) {
	name, knobs, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, "/ ") {
		return SystemSpec{}, fmt.Errorf("memfs variant %q: want NAME:KNOB,KNOB, e.g. memfs-nodp:no-default-permissions", s)
	}
	spec := SystemSpec{Name: name, Kind: KindMemfs}
	for _, k := range strings.Split(knobs, ",") {
		switch k = strings.TrimSpace(k); k {
		case MemfsWriteback, MemfsNoDefaultPerms, MemfsProcess:
			spec.Args = append(spec.Args, k)
		case "":
		default:
			return SystemSpec{}, fmt.Errorf("memfs variant %q: unknown knob %q (want %s, %s or %s)", s, k, MemfsWriteback, MemfsNoDefaultPerms, MemfsProcess)
		}
	}
	return spec, nil
}

// NewSystem builds the system of spec; spoolfsBin is the spoolfs binary.
func NewSystem(spec SystemSpec, spoolfsBin string) (System, error) {
	name := spec.Name
	if name == "" {
		name = spec.Kind
	}
	switch spec.Kind {
	case KindTmpfs:
		return &tmpfsSystem{name: name}, nil
	case KindMemfs:
		if !slices.Contains(spec.Args, MemfsProcess) {
			return newMemfs(name, spec.Args), nil
		}
		if spoolfsBin == "" {
			return nil, errors.New("memfs in its own process: no spoolfs binary given")
		}
		return newMemfsProcess(name, spoolfsBin, spec.Args), nil
	case KindSpoolfs:
		if spoolfsBin == "" {
			return nil, errors.New("spoolfs: no binary given")
		}
		return newSpoolfs(name, spoolfsBin, spec.Args), nil
	case KindDisk:
		return newDisk(name), nil
	case KindReplicated:
		if spoolfsBin == "" {
			return nil, errors.New("spoolfs: no binary given")
		}
		return newReplicated(name, spoolfsBin, spec.Args), nil
	}
	return nil, fmt.Errorf("unknown system kind %q (want tmpfs, memfs, spoolfs, disk or spoolfs-replicated)", spec.Kind)
}

// tmpfsSystem is the kernel's tmpfs, mounted for the run.
type tmpfsSystem struct {
	name string
	dir  string
}

func (s *tmpfsSystem) Name() string     { return s.name }
func (s *tmpfsSystem) Kind() string     { return KindTmpfs }
func (s *tmpfsSystem) FUSE() bool       { return false }
func (s *tmpfsSystem) Describe() string { return "mount -t tmpfs (kernel)" }

func (s *tmpfsSystem) Mount(ctx context.Context, dir string) error {
	if err := unix.Mount("bench-tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount -t tmpfs %s: %w", dir, err)
	}
	s.dir = dir
	return nil
}

func (s *tmpfsSystem) Unmount() error {
	if s.dir == "" {
		return nil
	}
	dir := s.dir
	s.dir = ""
	return unmountDir(dir, unmountTimeout)
}

// memfsSystem is jacobsa/fuse's samples/memfs, served by this process with
// the config of samples/mount_memfs (writeback cache disabled), unless a
// variant turns a knob.
type memfsSystem struct {
	name           string
	knobs          []string
	writeback      bool
	noDefaultPerms bool

	dir string
	mfs *fuse.MountedFileSystem
}

func newMemfs(name string, knobs []string) *memfsSystem {
	return &memfsSystem{
		name:           name,
		knobs:          knobs,
		writeback:      slices.Contains(knobs, MemfsWriteback),
		noDefaultPerms: slices.Contains(knobs, MemfsNoDefaultPerms),
	}
}

// ServeMemfs mounts the memfs sample at dir with the given knobs and serves
// it until ctx is done (`spoolfs bench serve-memfs`, for the process knob).
func ServeMemfs(ctx context.Context, dir string, knobs []string) error {
	s := newMemfs("memfs", knobs)
	if err := s.Mount(ctx, dir); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Unmount()
}

func (s *memfsSystem) Name() string { return s.name }
func (s *memfsSystem) Kind() string { return KindMemfs }
func (s *memfsSystem) FUSE() bool   { return true }
func (s *memfsSystem) Describe() string {
	d := "jacobsa/fuse samples/memfs in the bench process, MountConfig of samples/mount_memfs (DisableWritebackCaching)"
	if len(s.knobs) > 0 {
		d += " but " + strings.Join(s.knobs, ", ")
	}
	return d
}

func (s *memfsSystem) Mount(ctx context.Context, dir string) error {
	server := memfs.NewMemFS(uint32(os.Getuid()), uint32(os.Getgid()))
	cfg := &fuse.MountConfig{
		FSName:                    "bench-memfs",
		Subtype:                   "memfs",
		DisableWritebackCaching:   !s.writeback,
		DisableDefaultPermissions: s.noDefaultPerms,
	}
	mfs, err := fuse.Mount(dir, server, cfg)
	if err != nil {
		return fmt.Errorf("mount memfs at %s: %w", dir, err)
	}
	s.dir, s.mfs = dir, mfs
	// memfs's root is 0700 owned by the caller: open it to the clients.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("memfs root: %w", err)
	}
	return nil
}

func (s *memfsSystem) Unmount() error {
	if s.dir == "" {
		return nil
	}
	dir, mfs := s.dir, s.mfs
	s.dir, s.mfs = "", nil
	err := unmountDir(dir, unmountTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), unmountTimeout)
	defer cancel()
	if jerr := mfs.Join(ctx); jerr != nil && err == nil {
		err = fmt.Errorf("memfs server did not stop: %w", jerr)
	}
	return err
}

// lockedBuffer collects a child's output; Tail returns its end.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep memory bounded on a chatty child
		tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-64<<10:]...)
		b.buf.Reset()
		b.buf.Write(tail)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(string(s))
}
