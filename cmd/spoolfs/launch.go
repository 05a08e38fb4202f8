package main

// Launch: `spoolfs mount ... -- CMD` and `--unshare` (internal/launch
// does the work, node.ServeChild unmounts after CMD), and `spoolfs probe DIR`, the liveness probe
// of a mount.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/launch"
	"github.com/spoolfs/spoolfs/node"
)

func init() { extraCommands = append(extraCommands, newProbeCmd) }

// launchFlags are the flags of `spoolfs mount` for -- CMD.
type launchFlags struct {
	stopGrace    time.Duration
	readyTimeout time.Duration
}

func addLaunchFlags(c *cobra.Command, l *launchFlags) {
	fl := c.Flags()
	fl.DurationVar(&l.stopGrace, "stop-grace", launch.DefaultStopGrace,
		"with -- CMD: how long CMD has to exit after SIGTERM before SIGKILL")
	fl.DurationVar(&l.readyTimeout, "ready-timeout", launch.DefaultReadyTimeout,
		"with -- CMD: how long the mount may take to answer before CMD starts")
}

// childArgv returns CMD ARGS after "--" (nil without "--").
func childArgv(c *cobra.Command, args []string) ([]string, error) {
	dash := c.ArgsLenAtDash()
	if dash < 0 {
		return nil, nil
	}
	if dash >= len(args) {
		return nil, errors.New("nothing after --: want -- CMD [ARGS...]")
	}
	return args[dash:], nil
}

// reexecUnshared runs this same command line, minus --unshare, in new user
// and mount namespaces, and exits with its status.
func reexecUnshared(log *zap.Logger) error {
	code, err := launch.RunUnshared(context.Background(), launch.WithoutUnshareFlag(os.Args), launch.UnshareConfig{Logger: log})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// enterUnshared is the first step of the process --unshare re-executed.
func enterUnshared() error {
	if !launch.Unshared() {
		return nil
	}
	if err := launch.EnterUnshared(); err != nil {
		return &exitError{code: 1, err: err}
	}
	return nil
}

// serveChild runs argv inside v, then unmounts v; the exit status is
// argv's (node.ServeChild). sigs already carries SIGINT and SIGTERM.
func serveChild(v *node.Volume, argv []string, l launchFlags, sigs chan os.Signal, log *zap.Logger) error {
	signal.Notify(sigs, syscall.SIGHUP)
	code, err := node.ServeChild(v, argv, launch.ChildConfig{
		ReadyTimeout: l.readyTimeout,
		StopGrace:    l.stopGrace,
		Signals:      sigs,
		Logger:       log,
	})
	if err != nil || code != 0 {
		return &exitError{code: code, err: err}
	}
	return nil
}

func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	var wait bool
	c := &cobra.Command{
		Use:   "probe [flags] MOUNTPOINT",
		Short: "Exit 0 if the mount at MOUNTPOINT answers (a liveness probe)",
		Long: `Check that the spoolfs mount at MOUNTPOINT answers: its root is a mount
point and a statfs, which the kernel never answers from its caches, gets an
answer within --timeout. The mount is looked for in this mount namespace,
then in the namespaces of this user's processes (the private one of
spoolfs mount --unshare, which a container's exec probe runs outside of).
Exit status 0 if it answers, 1 if not (one line on stderr says why).`,
		Example: `  spoolfs probe --timeout 5s /var/spool/exim4
  spoolfs probe --wait --timeout 2m /var/spool/exim4   # until it is mounted and answers`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runProbe(args[0], timeout, wait)
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long the mount has to answer")
	c.Flags().BoolVar(&wait, "wait", false, "retry until the mount exists and answers, within --timeout")
	return c
}

func runProbe(dir string, timeout time.Duration, wait bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bo := &backoff.ExponentialBackOff{InitialInterval: 10 * time.Millisecond, Multiplier: 2, MaxInterval: 500 * time.Millisecond}
	for {
		left := time.Until(deadlineOf(ctx))
		_, err := launch.ProbeMount(ctx, dir, left)
		if err == nil {
			return nil
		}
		if !wait || ctx.Err() != nil {
			return &exitError{code: 1, err: err}
		}
		select {
		case <-ctx.Done():
			return &exitError{code: 1, err: fmt.Errorf("%w (waited %v)", err, timeout)}
		case <-time.After(bo.NextBackOff()):
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
