package replication

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestAcquireTimeoutNamesItself: a primary whose replicas are not running
// fails with ErrAcquireTimeout (and ErrNoQuorum), the bound it ran out of,
// and for each replica the question to ask; a caller's own deadline is
// not reported as the acquire timeout.
func TestAcquireTimeoutNamesItself(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} // nothing listens on ports 1-3
	cfg := PrimaryConfig{Volume: "v", Replicas: addrs, AcquireTimeout: 300 * time.Millisecond, Log: zap.NewNop()}
	_, _, err := OpenPrimary(context.Background(), cfg)
	if !errors.Is(err, ErrAcquireTimeout) || !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("OpenPrimary = %v; want ErrAcquireTimeout wrapping ErrNoQuorum", err)
	}
	for _, want := range append([]string{"acquire timeout of 300ms"}, "is `spoolfs replica` running at "+addrs[0]+"?",
		"is `spoolfs replica` running at "+addrs[2]+"?") {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	cfg.AcquireTimeout = time.Minute
	if _, _, err := OpenPrimary(ctx, cfg); errors.Is(err, ErrAcquireTimeout) || !errors.Is(err, ErrNoQuorum) {
		t.Errorf("with the caller's deadline: %v; want ErrNoQuorum, not ErrAcquireTimeout", err)
	}
}
