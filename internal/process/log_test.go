package process

import (
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestNewLogger(t *testing.T) {
	for _, format := range []string{"", "json", "console"} {
		log, err := NewLogger("warn", format)
		if err != nil {
			t.Fatalf("NewLogger(warn, %q): %v", format, err)
		}
		if log.Core().Enabled(zapcore.InfoLevel) || !log.Core().Enabled(zapcore.WarnLevel) {
			t.Errorf("format %q: level warn not applied", format)
		}
	}
	for _, tc := range []struct{ level, format, want string }{
		{"loud", "json", `--log-level "loud"`},
		{"info", "xml", `--log-format "xml"`},
	} {
		if _, err := NewLogger(tc.level, tc.format); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewLogger(%q, %q) = %v; want an error containing %s", tc.level, tc.format, err, tc.want)
		}
	}
}
