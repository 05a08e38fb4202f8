package launch

// Launch: `spoolfs mount ... -- CMD ARGS...` runs CMD inside the mount once it
// answers, forwards the stop and reload signals to it, and reports its exit
// status. node.ServeChild does it for a mounted Volume: RunChildIn, then
// the clean unmount of a stop (node.ServeUntilSignal). RunChild alone does
// not touch the mount.
//
// Goroutines: RunChild runs on the caller's goroutine and owns one select
// loop over the child's exit, the forwarded signals, SIGCHLD (to reap
// orphans, see reap.go), the caller's context and the stop grace timer.
// One goroutine waits for the child (exec.Cmd.Wait).
//
// The readiness wait makes no request to the mount: this process serves
// it, and a request it made itself is the hazard of docs/failures.md,
// finding 1. It needs none: node.Mount returns once the kernel's INIT was
// answered (jacobsa's fuse.Mount reads and answers INIT before it
// returns, and the kernel takes the answer within that write), so the
// mount answers from then on; WaitMounted only checks that it is listed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// Defaults of ChildConfig.
const (
	DefaultReadyTimeout = 30 * time.Second
	DefaultStopGrace    = 30 * time.Second
)

// ErrMountNotReady is returned when the mount did not answer within the
// ready timeout; the child is not started.
var ErrMountNotReady = errors.New("launch: mount not ready")

// ChildConfig tunes RunChild. The zero value is usable.
type ChildConfig struct {
	// ReadyTimeout bounds the wait for the mount to answer before the child
	// starts (DefaultReadyTimeout if zero).
	ReadyTimeout time.Duration
	// StopGrace is how long the child has to exit after it was asked to stop
	// (SIGTERM or SIGINT forwarded, or ctx cancelled) before it, and every
	// process it left behind, is sent SIGKILL (DefaultStopGrace if zero).
	StopGrace time.Duration
	// Stdin, Stdout and Stderr of the child; os.Stdin, os.Stdout and
	// os.Stderr if nil.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Env of the child; this process's environment without the --unshare
	// marker if nil.
	Env []string
	// Dir is the child's working directory; the caller's if empty.
	Dir string
	// Signals, if not nil, replaces the process's own signals (tests inject
	// them here). If nil, RunChild subscribes to SIGTERM, SIGINT and SIGHUP
	// for its duration: while a child runs, they are the child's.
	Signals <-chan os.Signal
	// Logger; zap.NewNop() if nil.
	Logger *zap.Logger
}

func (c *ChildConfig) withDefaults() ChildConfig {
	d := *c
	if d.ReadyTimeout <= 0 {
		d.ReadyTimeout = DefaultReadyTimeout
	}
	if d.StopGrace <= 0 {
		d.StopGrace = DefaultStopGrace
	}
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.Stdout == nil {
		d.Stdout = os.Stdout
	}
	if d.Stderr == nil {
		d.Stderr = os.Stderr
	}
	if d.Env == nil {
		d.Env = ChildEnv(os.Environ())
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	return d
}

// Served is what RunChildIn needs of a mounted volume (node's *Volume, and
// a replicated volume built on it).
type Served interface {
	Dir() string
	// Done is closed when the volume stops serving.
	Done() <-chan struct{}
}

// RunChildIn runs argv inside the mounted volume v (RunChild) and stops it
// if v stops serving meanwhile (unmounted from outside, serving failed).
// It leaves v mounted: the caller stops it its own way afterwards. The code
// is the child's, or, if it could not run, 127 (not found), 126 (not
// executable) or 1, with the error.
func RunChildIn(v Served, argv []string, cfg ChildConfig) (int, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-v.Done():
			if ctx.Err() == nil { // not after the child, when the caller unmounts
				log.Warn("the volume stopped serving while the child runs: stopping the child", zap.String("dir", v.Dir()))
				cancel()
			}
		case <-ctx.Done():
		}
	}()
	code, err := RunChild(ctx, v.Dir(), argv, cfg)
	cancel()
	if err != nil {
		return startFailureCode(err), err
	}
	return code, nil
}

// startFailureCode is the shell's exit code for a command that could not run.
func startFailureCode(err error) int {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return 127
	case errors.Is(err, fs.ErrPermission):
		return 126
	}
	return 1
}

// RunChild waits until mountDir is listed as a mount point, runs argv with the
// caller's stdio and environment, forwards SIGTERM, SIGINT and SIGHUP to it
// and returns its exit code: its exit status, or 128+N if signal N killed it.
//
// SIGTERM and SIGINT, and the cancellation of ctx ("spoolfs is told to
// stop"), ask the child to stop: it gets SIGTERM (or the forwarded signal)
// and StopGrace to exit before SIGKILL. The mount is left alone: the caller
// flushes and unmounts once RunChild returns, after the child is gone.
//
// While the child runs this process is a child subreaper: processes the child
// leaves behind are reparented here, reaped as they exit and, once the child
// has exited, sent SIGTERM and then SIGKILL, so that none of them keeps the
// mount busy. This process must not run other subprocesses meanwhile (they
// could be reaped here; os/exec would then report ECHILD).
//
// If the mount is not listed within ReadyTimeout, or the child cannot be
// started, the child does not run and the error says why.
func RunChild(ctx context.Context, mountDir string, argv []string, cfg ChildConfig) (int, error) {
	c := cfg.withDefaults()
	if len(argv) == 0 {
		return 0, errors.New("launch: run child: no command")
	}
	if err := WaitMounted(ctx, mountDir, c.ReadyTimeout); err != nil {
		return 0, err
	}
	sigs := c.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(ch)
		sigs = ch
	}
	reaper, err := startReaper()
	if err != nil {
		return 0, err
	}
	defer reaper.stop()
	cmd, cio, err := startChild(argv, &c)
	if err != nil {
		return 0, err
	}
	c.Logger.Info("child started", zap.Strings("argv", argv), zap.Int("pid", cmd.Process.Pid), zap.String("mount", mountDir))
	code := superviseChild(ctx, cmd, sigs, reaper, &c)
	reaper.stopOrphans(c.StopGrace, c.Logger)
	cio.finish(time.Second)
	c.Logger.Info("child exited", zap.Int("pid", cmd.Process.Pid), zap.Int("code", code))
	return code, nil
}

func startChild(argv []string, c *ChildConfig) (*exec.Cmd, *childIO, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	// If this process dies without stopping the child (kill -9), the child
	// is asked to stop: its spool is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cio, err := attachIO(cmd, c)
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		cio.abort()
		return nil, nil, fmt.Errorf("launch: start %q: %w", argv[0], err)
	}
	cio.started()
	return cmd, cio, nil
}

// childIO connects the child's stdio that are not files (tests pass
// buffers) through pipes this package owns. os/exec would do it too, but its
// Wait then waits until every process holding the pipes has exited, orphans
// included, which are stopped only after the child's exit is known.
type childIO struct {
	childEnds []*os.File // closed here once the child has them
	copies    []chan struct{}
	readEnds  []*os.File // of output pipes, closed when copying is over
	stdinW    *os.File
}

func attachIO(cmd *exec.Cmd, c *ChildConfig) (*childIO, error) {
	cio := &childIO{}
	var err error
	if cmd.Stdin, err = cio.input(c.Stdin); err == nil {
		if cmd.Stdout, err = cio.output(c.Stdout); err == nil {
			cmd.Stderr = cmd.Stdout
			if !sameWriter(c.Stdout, c.Stderr) {
				cmd.Stderr, err = cio.output(c.Stderr)
			}
		}
	}
	if err != nil {
		cio.abort()
		return nil, fmt.Errorf("launch: child stdio: %w", err)
	}
	return cio, nil
}

// sameWriter reports whether a and b are the same writer, to be given one
// pipe (as os/exec does), so that their copies do not race.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

func (cio *childIO) input(r io.Reader) (*os.File, error) {
	if f, ok := r.(*os.File); ok {
		return f, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cio.childEnds = append(cio.childEnds, pr)
	cio.stdinW = pw
	go func() {
		_, _ = io.Copy(pw, r)
		pw.Close()
	}()
	return pr, nil
}

func (cio *childIO) output(w io.Writer) (*os.File, error) {
	if f, ok := w.(*os.File); ok {
		return f, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cio.childEnds = append(cio.childEnds, pw)
	cio.readEnds = append(cio.readEnds, pr)
	done := make(chan struct{})
	cio.copies = append(cio.copies, done)
	go func() {
		defer close(done)
		_, _ = io.Copy(w, pr)
	}()
	return pw, nil
}

// started closes this process's copies of the child's ends.
func (cio *childIO) started() {
	for _, f := range cio.childEnds {
		f.Close()
	}
}

func (cio *childIO) abort() {
	cio.started()
	cio.finish(0)
}

// finish waits up to timeout for the output copies to reach end of file
// (every writer gone), then closes the pipes.
func (cio *childIO) finish(timeout time.Duration) {
	deadline := time.After(timeout)
	for _, done := range cio.copies {
		select {
		case <-done:
		case <-deadline:
		}
	}
	for _, f := range cio.readEnds {
		f.Close()
	}
	if cio.stdinW != nil {
		cio.stdinW.Close()
	}
}

// superviseChild is the loop of RunChild: it returns the child's exit code
// once the child has exited.
func superviseChild(ctx context.Context, cmd *exec.Cmd, sigs <-chan os.Signal, r *reaper, c *ChildConfig) int {
	waited := make(chan *os.ProcessState, 1)
	go func() {
		// The error is the exit status, which the ProcessState holds —
		// unless the wait itself failed (ECHILD: another waiter of this
		// process collected the child), which leaves it nil.
		if err := cmd.Wait(); cmd.ProcessState == nil {
			c.Logger.Error("the child's exit status is lost: another wait in this process collected it", zap.Int("pid", cmd.Process.Pid), zap.Error(err))
		}
		waited <- cmd.ProcessState
	}()
	ctxDone := ctx.Done()
	var grace <-chan time.Time
	startGrace := func() {
		if grace == nil {
			grace = time.After(c.StopGrace)
		}
	}
	for {
		select {
		case st := <-waited:
			return ExitCode(st)
		case sig := <-sigs:
			forwardSignal(cmd.Process, sig, c.Logger)
			if isStopSignal(sig) {
				startGrace()
			}
		case <-r.chld:
			r.reapOrphans(cmd.Process.Pid)
		case <-ctxDone:
			ctxDone = nil
			c.Logger.Info("stopping child", zap.Int("pid", cmd.Process.Pid), zap.Duration("grace", c.StopGrace))
			_ = cmd.Process.Signal(syscall.SIGTERM)
			startGrace()
		case <-grace:
			grace = make(chan time.Time) // never again
			c.Logger.Warn("child did not stop in time: SIGKILL", zap.Int("pid", cmd.Process.Pid), zap.Duration("grace", c.StopGrace))
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
}

// forwardSignal passes sig on to the child. SIGINT is not passed on when it
// most likely came from the terminal (Ctrl-C): the terminal already sent it
// to the whole foreground process group, the child included, and a mail
// server should not see one Ctrl-C twice.
func forwardSignal(p *os.Process, sig os.Signal, log *zap.Logger) {
	if sig == syscall.SIGINT && inForegroundOfTerminal() {
		log.Debug("SIGINT from the terminal reached the child directly")
		return
	}
	log.Info("forwarding signal", zap.Stringer("signal", sig), zap.Int("pid", p.Pid))
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.Warn("forward signal", zap.Stringer("signal", sig), zap.Error(err))
	}
}

// inForegroundOfTerminal reports whether this process has a controlling
// terminal whose foreground process group is this process's group.
func inForegroundOfTerminal() bool {
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

func isStopSignal(sig os.Signal) bool {
	return sig == syscall.SIGTERM || sig == syscall.SIGINT
}

// ExitCode is the shell's view of a finished process: its exit status, or
// 128+N if signal N killed it; 1 when its status was lost (st nil).
func ExitCode(st *os.ProcessState) int {
	if st == nil {
		return 1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// WaitMounted waits until dir is a mount point in this process's mount
// table (/proc/self/mountinfo). It makes no request to the mount: the
// process that serves it calls it (RunChild), and its mount is served as
// soon as it is listed (Mount returns after INIT). It gives up after
// timeout, or when ctx ends, with an error wrapping ErrMountNotReady (or
// the context's error).
func WaitMounted(ctx context.Context, dir string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir = filepath.Clean(dir)
	bo := &backoff.ExponentialBackOff{InitialInterval: time.Millisecond, Multiplier: 2, MaxInterval: 100 * time.Millisecond}
	for {
		at, err := mountdev.MountsAt(dir)
		if err == nil && len(at) > 0 {
			return nil
		}
		last := err
		if last == nil {
			last = errors.New("not a mount point yet")
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: %s not mounted within %v: %w", ErrMountNotReady, dir, timeout, last)
			}
			return fmt.Errorf("launch: wait for mount %s: %w", dir, ctx.Err())
		case <-time.After(bo.NextBackOff()):
		}
	}
}
