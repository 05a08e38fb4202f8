package node

import (
	"context"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"

	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/launch"
	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// ServeUntilSignal serves v until it is unmounted by someone else or a
// signal arrives on sigs (SIGINT, SIGTERM). On the first signal it unmounts
// cleanly: retrying while busy for UnmountTimeout, then detaching lazily
// (and saying so), and waits until every op was answered. A second signal
// forces: lazy unmount and return at once. It returns the exit status for
// the process: 0 after a clean stop, 1 when forced or failed.
func ServeUntilSignal(v *Volume, sigs <-chan os.Signal) int {
	select {
	case <-v.Done():
		if v.removeDeadMount() {
			return 1
		}
		v.log.Info("unmounted from outside; stopping", zap.String("dir", v.dir))
		return v.finish()
	case s := <-sigs:
		v.log.Info("stopping: unmounting", zap.Stringer("signal", s), zap.String("dir", v.dir))
	}
	unmounted := make(chan error, 1)
	go func() { unmounted <- v.unmountForStop() }()
	for {
		select {
		case <-v.Done():
			if unmounted != nil {
				// The unmount ended too (or is about to: its next try finds
				// nothing mounted); let it log first.
				<-unmounted
			}
			return v.finish()
		case err := <-unmounted:
			unmounted = nil
			if err != nil {
				v.log.Error("unmount failed; signal again to force", zap.String("dir", v.dir), zap.Error(err))
			}
		case s := <-sigs:
			v.log.Warn("second signal: forcing a lazy unmount and exiting now", zap.Stringer("signal", s), zap.String("dir", v.dir))
			if err := v.Detach(); err != nil {
				v.log.Error("lazy unmount failed", zap.String("dir", v.dir), zap.Error(err))
			}
			return 1
		}
	}
}

// unmountForStop is the clean unmount of ServeUntilSignal.
func (v *Volume) unmountForStop() error {
	ctx, cancel := context.WithTimeout(context.Background(), v.opts.UnmountTimeout)
	defer cancel()
	lazy, err := v.Unmount(ctx)
	if lazy {
		v.log.Warn("mount still busy: detached it lazily; serving open files until they are closed (signal again to force)",
			zap.String("dir", v.dir), zap.Duration("waited", v.opts.UnmountTimeout))
	}
	return err
}

// removeDeadMount handles a connection that ended while still mounted (it
// was aborted, e.g. through /sys/fs/fuse/connections/N/abort): the mount
// is dead and would answer ENOTCONN, so detach it rather than leave it
// behind. It says whether it found one.
func (v *Volume) removeDeadMount() bool {
	if !mountdev.Dead(v.dir) {
		return false
	}
	v.log.Error("the FUSE connection was aborted while mounted", zap.String("dir", v.dir))
	if err := mountdev.ReplaceStale(v.dir, v.log); err != nil {
		v.log.Error("could not remove the dead mount", zap.Error(err))
	}
	v.finish()
	return true
}

// finish logs how serving ended and returns the exit status.
func (v *Volume) finish() int {
	fields := []zap.Field{zap.String("volume", v.opts.Volume), zap.String("dir", v.dir)}
	if counts := v.OpCounts(); len(counts) > 0 {
		fields = append(fields, zap.Any("ops", sortedCounts(counts)))
	}
	if err := v.Err(); err != nil {
		v.log.Error("serving ended with an error", append(fields, zap.Error(err))...)
		return 1
	}
	v.log.Info("unmounted", fields...)
	return 0
}

// sortedCounts renders op counts in a stable order for the log.
func sortedCounts(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k, n := range m {
		out = append(out, k+"="+strconv.FormatUint(n, 10))
	}
	sort.Strings(out)
	return out
}

// ServeChild runs argv inside the mounted volume v (RunChildIn) and, once
// it has exited, unmounts v as a stop does (ServeUntilSignal: a busy mount
// is retried, then detached lazily; a second SIGINT/SIGTERM forces).
//
// cfg.Signals should carry SIGTERM, SIGINT and SIGHUP (nil: ServeChild
// subscribes to them itself). The exit code is the child's; if the child
// exited 0 but the volume did not stop cleanly, it is 1. If the child could
// not run, the error says why and the code is 127 (command not found), 126
// (not executable) or 1, as a shell would say.
func ServeChild(v *Volume, argv []string, cfg launch.ChildConfig) (int, error) {
	if cfg.Signals == nil {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(ch)
		cfg.Signals = ch
	}
	if cfg.Logger == nil {
		cfg.Logger = v.log
	}
	code, runErr := launch.RunChildIn(v, argv, cfg)
	// The child is gone: stop the volume as a signal would, and let a
	// further SIGINT/SIGTERM force it.
	stop := make(chan os.Signal, 2)
	stop <- syscall.SIGTERM
	done := make(chan struct{})
	defer close(done)
	go passStopSignal(cfg.Signals, stop, done)
	if vcode := ServeUntilSignal(v, stop); vcode != 0 && code == 0 {
		code = vcode
	}
	return code, runErr
}

// passStopSignal passes the first SIGINT or SIGTERM from sigs to stop,
// until done.
func passStopSignal(sigs <-chan os.Signal, stop chan<- os.Signal, done <-chan struct{}) {
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				stop <- sig
				return
			}
		case <-done:
			return
		}
	}
}
