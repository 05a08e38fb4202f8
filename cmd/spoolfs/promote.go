package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoolfs/spoolfs/internal/admin"
)

func init() { extraCommands = append(extraCommands, newPromoteCmd) }

func newPromoteCmd() *cobra.Command {
	var adminAddr string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "promote VOLUME [--admin ADDR]",
		Short: "Make a follower of VOLUME its primary, without unmounting it",
		Long: `Ask the node whose admin endpoint is --admin (default ` + defaultAdmin + `) to
promote its follower of VOLUME: it stops following, takes a new term from a
quorum of the volume's replicas (which fences the old primary: its next
flush fails with EIO and it turns read-only), recovers the most advanced
replica's state, and serves the volume read-write from the same mount.
Processes with files open on it keep them. Exit 0 once the volume is
read-write.

If the new term or the recovery fails (fewer than W replicas answer within
the volume's --acquire-timeout), the follower goes on following, read-only,
and promote exits 1 with the reason; run it again once the replicas answer.
A volume the node is not a follower of is refused (exit 1).`,
		Example: `  spoolfs promote mx1-spool
  spoolfs promote mx1-spool --admin 10.0.2.8:7480`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want VOLUME, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			res, err := admin.Promote(ctx, adminAddr, args[0])
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w; the node goes on with the promotion: see spoolfs status --admin %s", err, adminAddr)
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(c.OutOrStdout(), "volume %s at %s is read-write: primary with term %d from lsn %d\n",
				res.Volume, res.Dir, res.Term, res.LSN)
			return nil
		},
	}
	c.Flags().StringVar(&adminAddr, "admin", defaultAdmin, "the follower's admin endpoint host:port")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the answer")
	return c
}
