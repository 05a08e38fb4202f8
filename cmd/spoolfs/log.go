package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/process"
)

// Logging flags, shared by every subcommand.
var logFlags struct {
	level  string
	format string
}

// addLogFlags adds --log-level and --log-format to the root command.
func addLogFlags(root *cobra.Command) {
	root.PersistentFlags().StringVar(&logFlags.level, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&logFlags.format, "log-format", "", "console or json (default: console on a terminal, else json)")
}

// newLogger builds the process logger from the logging flags.
func newLogger() (*zap.Logger, error) {
	return process.NewLogger(logFlags.level, logFlags.format)
}
