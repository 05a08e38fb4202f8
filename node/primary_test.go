package node

import (
	"testing"

	"github.com/spoolfs/spoolfs/internal/config"
)

// TestReplicationOf: a volume of the node config becomes the options of
// its replicated mount.
func TestReplicationOf(t *testing.T) {
	c, err := config.Parse([]byte(`
node_id: mx1
volumes:
  - name: mx1-spool
    mount_point: /var/spool/exim4
    replicas: [10.0.0.7:7400, 10.0.1.7:7400, 10.0.2.7:7400]
    w: 2
    log_bytes: 64MiB
    acquire_timeout: 7s
    ready_within: 4s
`))
	if err != nil {
		t.Fatal(err)
	}
	r := replicationOf(&c.Volumes[0], c.NodeID)
	if r.NodeID != "mx1" || r.W != 2 || r.MaxLogBytes != 64<<20 || len(r.Replicas) != 3 || r.AcquireTimeout.Seconds() != 7 || r.ReadyWithin.Seconds() != 4 {
		t.Errorf("replication options: %+v", r)
	}
}
