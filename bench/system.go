package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
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
// (e.g. "spoolfs-p1:GOMAXPROCS=1").
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
)

// ParseMemfsVariant parses "NAME:KNOB,KNOB" (knobs: writeback,
// no-default-permissions) into a memfs system spec, to measure what a mount
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
		case MemfsWriteback, MemfsNoDefaultPerms:
			spec.Args = append(spec.Args, k)
		case "":
		default:
			return SystemSpec{}, fmt.Errorf("memfs variant %q: unknown knob %q (want %s or %s)", s, k, MemfsWriteback, MemfsNoDefaultPerms)
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
		m := &memfsSystem{name: name, knobs: spec.Args}
		for _, k := range spec.Args {
			m.writeback = m.writeback || k == MemfsWriteback
			m.noDefaultPerms = m.noDefaultPerms || k == MemfsNoDefaultPerms
		}
		return m, nil
	case KindSpoolfs:
		if spoolfsBin == "" {
			return nil, errors.New("spoolfs: no binary given")
		}
		return &spoolfsSystem{name: name, bin: spoolfsBin, args: spec.Args}, nil
	}
	return nil, fmt.Errorf("unknown system kind %q (want tmpfs, memfs or spoolfs)", spec.Kind)
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

// spoolfsSystem is `spoolfs mount --local VOLUME DIR [args]` as a child
// process; it unmounts itself on SIGTERM.
type spoolfsSystem struct {
	name string
	bin  string
	args []string

	fsPrefix string // the mount type to wait for; "" means "fuse" (tests use a fake)

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *lockedBuffer
}

func (s *spoolfsSystem) Name() string { return s.name }
func (s *spoolfsSystem) Kind() string { return KindSpoolfs }
func (s *spoolfsSystem) FUSE() bool   { return true }
func (s *spoolfsSystem) Describe() string {
	env, flags := splitEnv(s.args)
	words := append(append(slices.Clone(env), "spoolfs mount --local VOLUME DIR"), flags...)
	return strings.Join(words, " ") + " (child process)"
}

func (s *spoolfsSystem) Mount(ctx context.Context, dir string) error {
	env, flags := splitEnv(s.args)
	args := append([]string{"mount", "--local", "bench", dir}, flags...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	s.stderr = &lockedBuffer{}
	cmd.Stdout = s.stderr
	cmd.Stderr = s.stderr
	// Its own process group: a Ctrl-C reaches the bench, which stops the
	// clients first and then this child. If the bench dies, so does the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.dir, s.cmd, s.exited = dir, cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	fsPrefix := s.fsPrefix
	if fsPrefix == "" {
		fsPrefix = "fuse"
	}
	if _, err := waitMounted(dir, fsPrefix, mountTimeout, s.exited); err != nil {
		s.Unmount()
		return fmt.Errorf("%s %s: %w; its output: %s", s.bin, strings.Join(args, " "), err, s.stderr.Tail(600))
	}
	return nil
}

func (s *spoolfsSystem) Unmount() error {
	if s.cmd == nil {
		return nil
	}
	dir, cmd := s.dir, s.cmd
	s.cmd = nil
	cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-s.exited:
		if st := cmd.ProcessState; st != nil && !st.Success() {
			err = fmt.Errorf("spoolfs %s exited with %v; its output: %s", s.name, st, s.stderr.Tail(600))
		}
	case <-time.After(unmountTimeout):
		cmd.Process.Kill()
		<-s.exited
		err = fmt.Errorf("spoolfs %s did not stop within %s after SIGTERM: killed", s.name, unmountTimeout)
	}
	if _, mounted, _ := findMount(dir); mounted {
		if uerr := unmountDir(dir, time.Second); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	return err
}

var envWord = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// splitEnv splits the leading VAR=value words off args.
func splitEnv(args []string) (env, rest []string) {
	i := 0
	for i < len(args) && envWord.MatchString(args[i]) {
		i++
	}
	return args[:i:i], args[i:]
}

// ServerPID returns the pid of the spoolfs process (0 when not mounted).
func (s *spoolfsSystem) ServerPID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Output returns what the spoolfs process printed so far.
func (s *spoolfsSystem) Output() string { return s.stderr.Tail(4000) }

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
