package node

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/launch"
)

// The serving process never makes a FUSE request to its own mount
// (docs/failures.md, finding 1): these tests count the requests its
// volume answered while it does what used to make one.

// TestHealthzNoRequest: /healthz checks that the actor steps (an empty
// event) without a statfs of the mount, and fails when the actor is
// stuck.
func TestHealthzNoRequest(t *testing.T) {
	requireFUSE(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	n, admin, _ := startEmbedded(t, t.TempDir(), newMountDir(t), log)
	vols, _ := n.parts()
	srv := vols[0].Server()
	before := srv.OpCounts()
	for range 5 {
		if code, body := get(t, admin, "/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz: %d %s", code, body)
		}
	}
	if after := srv.OpCounts(); !maps.Equal(before, after) {
		t.Fatalf("/healthz made FUSE requests: ops before %v, after %v", before, after)
	}

	release := make(chan struct{})
	held := make(chan struct{})
	go srv.Do(context.Background(), func(*fsactor.State) { close(held); <-release })
	<-held
	code, body := get(t, admin, "/healthz")
	close(release)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "did not step") {
		t.Fatalf("/healthz with the actor stuck: %d %s", code, body)
	}
}

// TestRunChildNoRequest: starting `-- CMD` waits for the mount without a
// request to it (the old readiness wait stat'ed the mount root).
func TestRunChildNoRequest(t *testing.T) {
	requireFUSE(t)
	o := config.DefaultMountOptions()
	o.Volume, o.Dir = "child", newMountDir(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	v, err := Mount(o, &fsactor.DiscardSink{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := v.Unmount(ctx); err != nil {
			t.Errorf("unmount: %v", err)
		}
		<-v.Done()
	})
	code, err := launch.RunChildIn(v, []string{"true"}, launch.ChildConfig{ReadyTimeout: 10 * time.Second, Logger: log})
	if err != nil || code != 0 {
		t.Fatalf("launch.RunChildIn: code %d, %v", code, err)
	}
	if ops := v.OpCounts(); len(ops) != 0 {
		t.Fatalf("the readiness wait made FUSE requests: %v", ops)
	}
}
