// Command spoolfs mounts, serves and replicates spoolfs volumes.
//
// The CLI only reads flags and calls package node; see
// docs/architecture.md for the layout.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// extraCommands lets other files of this package (e.g. bench.go) add
// subcommands from their init(): extraCommands = append(extraCommands, newBenchCmd).
var extraCommands []func() *cobra.Command

func main() { os.Exit(run(os.Args[1:])) }

// run executes the command line and returns the exit status: 0, 1 for a
// failure, 2 for a usage error (nothing was done), or what the command
// chose (exitError).
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.err == nil:
		return ee.code
	case errors.As(err, &ee):
		fmt.Fprintf(os.Stderr, "spoolfs: %v\n", ee.err)
		return ee.code
	}
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command") {
		// cobra's own usage error, possibly with suggestions on more lines
		first, _, _ := strings.Cut(msg, "\n")
		fmt.Fprintf(os.Stderr, "spoolfs: %s (see spoolfs --help)\n", first)
		return 2
	}
	fmt.Fprintf(os.Stderr, "spoolfs: %v\n", err)
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "spoolfs",
		Short:         "A replicated, in-memory filesystem for mail spools and queues",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Version = versionLine() // --version (cobra adds the flag)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr(c, err)
	})
	addLogFlags(root)
	root.AddCommand(newMountCmd(), newUmountCmd(), newVersionCmd())
	for _, mk := range extraCommands {
		root.AddCommand(mk())
	}
	return root
}

// exitError carries the exit status a command wants; err (if any) is
// printed as one line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr is a command-line mistake: exit status 2, nothing done.
func usageErr(c *cobra.Command, err error) error {
	name := c.Name() + ": "
	if !c.HasParent() {
		name = ""
	}
	return &exitError{code: 2, err: fmt.Errorf("%s%w (see %s --help)", name, err, c.CommandPath())}
}
