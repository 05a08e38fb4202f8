package node

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/spoolfs/spoolfs/internal/admin"
)

// TestReplicaRowsAndMetricsOfAFailedVolume: a volume whose storage failed
// shows why in `spoolfs status --replicas` and as
// spoolfs_replica_storage_failed 1, without the figures it cannot know.
func TestReplicaRowsAndMetricsOfAFailedVolume(t *testing.T) {
	r := admin.ReplicaStatus{Addr: "10.0.0.7:7400", Volumes: []admin.ReplicaVolStatus{
		{Volume: "ok", AcceptedTerm: 3, LastTerm: 3, LSN: 42, Commits: 7, Holder: "mx1"},
		{Volume: "sick", AcceptedTerm: 3, Failed: "write batch: write /data/sick.db: no space left on device"},
	}}
	var out bytes.Buffer
	tw := tabwriter.NewWriter(&out, 2, 4, 2, ' ', 0)
	admin.PrintReplicaRows(tw, r)
	tw.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "42") ||
		!strings.Contains(lines[1], "sick") || !strings.Contains(lines[1], "(storage failed: write batch") {
		t.Fatalf("rows:\n%s", out.String())
	}

	ch := make(chan prometheus.Metric, 64)
	for _, v := range r.Volumes {
		collectStore(ch, r.Addr, v)
	}
	close(ch)
	failed := map[string]float64{}
	lsnOf := map[string]bool{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		vol := ""
		for _, l := range d.GetLabel() {
			if l.GetName() == "volume" {
				vol = l.GetValue()
			}
		}
		switch desc := m.Desc().String(); {
		case strings.Contains(desc, `"spoolfs_replica_storage_failed"`):
			failed[vol] = d.GetGauge().GetValue()
		case strings.Contains(desc, `"spoolfs_replica_lsn"`):
			lsnOf[vol] = true
		}
	}
	if failed["ok"] != 0 || failed["sick"] != 1 {
		t.Errorf("spoolfs_replica_storage_failed: %v, want ok 0, sick 1", failed)
	}
	if !lsnOf["ok"] || lsnOf["sick"] {
		t.Errorf("spoolfs_replica_lsn reported for %v, want only the working volume", lsnOf)
	}
}
