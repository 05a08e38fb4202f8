package process

import (
	"fmt"
	"os"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// NewLogger builds the process logger: zap's production configuration
// without sampling and with RFC 3339 timestamps, writing to stderr at level ("debug", "info", "warn", "error"), encoded
// as format: "console", "json", or "" for console on a terminal and JSON
// otherwise.
func NewLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	if format == "" {
		format = "json"
		if IsTerminal(os.Stderr) {
			format = "console"
		}
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	// No sampling of the whole logger: --access-log asks for every line.
	// Storm-prone lines (op errors) are sampled where they are written.
	cfg.Sampling = nil
	switch format {
	case "json":
		// RFC 3339 with nanoseconds (an ISO 8601 profile every log
		// pipeline parses), not zap's default float epoch seconds.
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	case "console":
		cfg.Encoding = "console"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", format)
	}
	enc := zapcore.NewJSONEncoder(cfg.EncoderConfig)
	if format == "console" {
		enc = zapcore.NewConsoleEncoder(cfg.EncoderConfig)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(countingWriter{os.Stderr}), cfg.Level)
	// zap reports a failed write on its error output: plain stderr, which
	// then fails as well, silently (counting it would count twice).
	return cfg.Build(zap.WrapCore(func(zapcore.Core) zapcore.Core { return core }),
		zap.ErrorOutput(zapcore.Lock(os.Stderr)))
}

// logWriteFailures counts log writes that failed (stderr a closed pipe, a
// full disk behind a redirection...). A failed log write is never fatal.
var logWriteFailures atomic.Uint64

// LogWriteFailures is how many log lines could not be written so far
// (spoolfs_log_write_failures_total).
func LogWriteFailures() uint64 { return logWriteFailures.Load() }

// countingWriter writes log lines to w and counts the failures. With
// SIGPIPE handled (SurviveSIGPIPE), a write to a closed pipe returns EPIPE
// here instead of killing the process.
type countingWriter struct{ w *os.File }

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		logWriteFailures.Add(1)
	}
	return n, err
}

// Sync is a no-op: stderr is unbuffered, and fsync of a pipe or terminal
// only fails.
func (c countingWriter) Sync() error { return nil }

// IsTerminal says whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
