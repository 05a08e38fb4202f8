package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
)

func newUmountCmd() *cobra.Command {
	var lazy bool
	c := &cobra.Command{
		Use:     "umount [--lazy] DIR",
		Aliases: []string{"unmount"},
		Short:   "Unmount the spoolfs volume mounted at DIR",
		Long: `Unmount the spoolfs volume mounted at DIR. The spoolfs process serving it
sees the unmount and exits 0, as after SIGTERM (a replicated primary first
waits for its replicas to hold every change).

As root it calls umount2(2); as the user who mounted it, fusermount3 -u. DIR
must be a spoolfs mount: anything else is refused. A mount in use (an open
file, a shell's working directory) is busy; --lazy detaches it at once and
the kernel tears it down when the last user lets go. A mount left behind by a
killed spoolfs ("Transport endpoint is not connected") is unmounted the same way.`,
		Example: `  spoolfs umount ./mnt
  spoolfs umount --lazy /var/spool/exim4`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want DIR, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			m, err := mountdev.UnmountSpoolfs(args[0], lazy)
			if errors.Is(err, unix.EBUSY) {
				err = fmt.Errorf("%w; close what uses it, or pass --lazy to detach it now", err)
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(c.OutOrStdout(), "unmounted %s (%s)\n", m.Point, m.Source)
			return nil
		},
	}
	c.Flags().BoolVarP(&lazy, "lazy", "l", false, "detach now even if busy (umount -l); the kernel finishes when the last user lets go")
	return c
}
