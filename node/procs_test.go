package node

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	"github.com/spoolfs/spoolfs/replication"
)

// TestAdaptProcs: a replica that adapts GOMAXPROCS keeps one P while no
// primary ships to it and one per volume being shipped to (up to the
// CPUs) while primaries do.
func TestAdaptProcs(t *testing.T) {
	testsupport.RequireCPUs(t, 2) // to see GOMAXPROCS grow
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	r, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), AdaptProcs: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background())
	waitProcs(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, vol := range []string{"a", "b"} {
		p, _, err := replication.OpenPrimary(ctx, replication.PrimaryConfig{Volume: vol, Replicas: []string{r.Addr()}, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
	}
	waitProcs(t, 2)
}

func waitProcs(t *testing.T, want int) {
	t.Helper()
	testsupport.WaitForErr(t, 10*time.Second, fmt.Sprintf("GOMAXPROCS %d", want), func() error {
		if n := runtime.GOMAXPROCS(0); n != want {
			return fmt.Errorf("GOMAXPROCS %d", n)
		}
		return nil
	})
}
