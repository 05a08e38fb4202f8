package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// childSystem is a filesystem served by a child process that mounts it at
// the directory it is given and unmounts it on SIGTERM: `spoolfs mount
// --local VOLUME DIR [flags]`, or memfs served by `spoolfs bench serve-memfs`.
type childSystem struct {
	name     string
	kind     string
	bin      string
	env      []string                  // added to this process's environment
	argv     func(dir string) []string // the arguments after bin
	describe string

	fsPrefix string // the mount type to wait for; "" means "fuse" (tests use a fake)

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *lockedBuffer
}

// newSpoolfs returns `spoolfs mount --local bench DIR` with args: leading
// VAR=value words go to its environment, then a word @PATH names another
// spoolfs binary (to compare two builds), the rest are flags.
func newSpoolfs(name, bin string, args []string) *childSystem {
	env, bin, prog, flags := variantArgs(bin, args)
	words := append(append(slices.Clone(env), prog+" mount --local VOLUME DIR"), flags...)
	return &childSystem{
		name: name, kind: KindSpoolfs, bin: bin, env: env,
		argv: func(dir string) []string {
			return append([]string{"mount", "--local", "bench", dir}, flags...)
		},
		describe: strings.Join(words, " ") + " (child process)",
	}
}

// variantArgs splits a variant's words: leading VAR=value words (env), an
// optional @PATH naming another binary (bin and prog, as shown), the flags.
func variantArgs(bin string, args []string) (env []string, _ string, prog string, flags []string) {
	env, flags = splitEnv(args)
	prog = "spoolfs"
	if len(flags) > 0 && strings.HasPrefix(flags[0], "@") && len(flags[0]) > 1 {
		bin, prog, flags = flags[0][1:], flags[0][1:], flags[1:]
	}
	return env, bin, prog, flags
}

// newMemfsProcess returns memfs served by `spoolfs bench serve-memfs`.
func newMemfsProcess(name, bin string, knobs []string) *childSystem {
	var rest []string
	for _, k := range knobs {
		if k != MemfsProcess {
			rest = append(rest, k)
		}
	}
	d := "jacobsa/fuse samples/memfs in its own process (spoolfs bench serve-memfs), MountConfig of samples/mount_memfs (DisableWritebackCaching)"
	if len(rest) > 0 {
		d += " but " + strings.Join(rest, ", ")
	}
	return &childSystem{
		name: name, kind: KindMemfs, bin: bin,
		argv: func(dir string) []string {
			return []string{"bench", "serve-memfs", "--knobs=" + strings.Join(rest, ","), dir}
		},
		describe: d,
	}
}

func (s *childSystem) Name() string     { return s.name }
func (s *childSystem) Kind() string     { return s.kind }
func (s *childSystem) FUSE() bool       { return true }
func (s *childSystem) Describe() string { return s.describe }

func (s *childSystem) Mount(ctx context.Context, dir string) error {
	args := s.argv(dir)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
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

func (s *childSystem) Unmount() error {
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
			err = fmt.Errorf("%s exited with %v; its output: %s", s.name, st, s.stderr.Tail(600))
		}
	case <-time.After(unmountTimeout):
		cmd.Process.Kill()
		<-s.exited
		err = fmt.Errorf("%s did not stop within %s after SIGTERM: killed", s.name, unmountTimeout)
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

// ServerPID returns the pid of the serving process (0 when not mounted).
func (s *childSystem) ServerPID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
