package main

// `spoolfs bench follow-lag`: the follower-lag benchmark of issue 11
// (bench/follow.go).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/spoolfs/spoolfs/bench"
)

func newBenchFollowCmd() *cobra.Command {
	o := bench.DefaultFollowOptions("")
	var out string
	c := &cobra.Command{
		Use:   "follow-lag [flags]",
		Short: "Measure how long a file closed on a primary takes to be visible on a follower (3 local replicas, loopback)",
		Long: `Start three replica processes, a primary (mount --replicas) and a follower
(mount --follow) of one volume under $TMPDIR/spoolfs-bench-PID-follow-*, create
files on the primary at a paced rate (create, write, close: close returns once
W replicas hold the file) and stat each name on the follower from the moment
its close returned until the stat succeeds. Prints p50, p99 and max of that
lag and of the primary's close as a Markdown table, with issue 11's target
(p99 ≤ 10 ms on loopback). Everything is unmounted and removed at the end.
Needs root.`,
		Example: `  spoolfs bench follow-lag
  spoolfs bench follow-lag --rate 2000 --duration 30s --out lag.md`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if o.Bin == "" {
				exe, err := os.Executable()
				if err != nil {
					return &exitError{code: 1, err: fmt.Errorf("finding this executable: %w", err)}
				}
				o.Bin = exe
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			res, err := bench.FollowLag(ctx, o)
			if res != nil {
				var buf bytes.Buffer
				res.WriteMarkdown(&buf)
				_, _ = io.Copy(c.OutOrStdout(), bytes.NewReader(buf.Bytes()))
				if out != "" {
					if werr := os.WriteFile(out, buf.Bytes(), 0o644); werr != nil {
						err = errors.Join(err, fmt.Errorf("write report: %w", werr))
					}
				}
			}
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("bench follow-lag: %w", err)}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.IntVar(&o.Rate, "rate", o.Rate, "files per second created on the primary")
	fl.DurationVar(&o.Duration, "duration", o.Duration, "how long files are created")
	fl.IntVar(&o.Size, "size", o.Size, "bytes per file")
	fl.IntVar(&o.Writers, "writers", o.Writers, "goroutines creating files (and checking them on the follower)")
	fl.DurationVar(&o.Poll, "poll", o.Poll, "pause between two stats of a name on the follower")
	fl.DurationVar(&o.Deadline, "deadline", o.Deadline, "a file not visible on the follower after this counts as missing")
	fl.StringArrayVar(&o.Flags, "mount-flag", nil, "a flag for both mounts, e.g. --mount-flag=--entry-timeout=1s (repeatable)")
	fl.StringVar(&o.Bin, "spoolfs-bin", "", "spoolfs binary to run (default: this executable)")
	fl.StringVar(&out, "out", "", "also write the report to this file")
	return c
}
