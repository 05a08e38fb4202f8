package admin

import (
	"strings"
	"testing"
)

// TestVerdict: the exit status of `spoolfs status` for each condition,
// the worst winning (fenced, below quorum, lagging), and the reason names
// the volume.
func TestVerdict(t *testing.T) {
	link := func(lag uint64) VolumeReplicaStatus { return VolumeReplicaStatus{Addr: "r", Lag: lag} }
	vol := func(role string, answering int, lags ...uint64) VolumeStatus {
		v := VolumeStatus{Volume: role + "-vol", Role: role, W: 2, Answering: answering, ReadyWithin: "3s"}
		for _, l := range lags {
			v.Links = append(v.Links, link(l))
		}
		return v
	}
	follower := func(connected bool, lag uint64) VolumeStatus {
		f := &FollowStatus{Source: "r1", Connected: connected, LagRecords: lag}
		if !connected {
			f.Err = "gone"
		}
		return VolumeStatus{Volume: "f-vol", Role: "follower", Follow: f}
	}
	for _, tc := range []struct {
		name string
		vols []VolumeStatus
		want int
		why  string
	}{
		{"healthy", []VolumeStatus{vol("primary", 3, 0, 0, 5)}, ExitHealthy, ""},
		{"no volumes", nil, ExitHealthy, ""},
		{"one down, within the lag bound", []VolumeStatus{vol("primary", 2, 0, 0, 100)}, ExitHealthy, ""},
		{"lagging", []VolumeStatus{vol("primary", 3, 0, 0, 1001)}, ExitLagging, "lacks 1001 records"},
		{"below quorum", []VolumeStatus{vol("primary", 1, 0, 2000, 2000)}, ExitBelowQuorum, "1 of 3 replicas answered within 3s, 2 needed"},
		{"follower", []VolumeStatus{follower(true, 10)}, ExitHealthy, ""},
		{"follower lagging", []VolumeStatus{follower(true, 1001)}, ExitLagging, "1001 records behind r1"},
		{"follower disconnected", []VolumeStatus{follower(false, 0)}, ExitLagging, "connected to no replica (gone)"},
		{"below quorum beats a follower", []VolumeStatus{follower(false, 0), vol("primary", 1, 0, 0, 0)}, ExitBelowQuorum, "below quorum"},
		{"fenced wins", []VolumeStatus{vol("primary", 1, 0, 0, 0), vol("fenced", 0, 0, 0, 0)}, ExitFenced, "fenced-vol is fenced"},
	} {
		code, why := Verdict(NodeStatus{Volumes: tc.vols}, 1000)
		if code != tc.want || !strings.Contains(why, tc.why) || (tc.why == "") != (why == "") {
			t.Errorf("%s: exit %d %q, want %d and %q", tc.name, code, why, tc.want, tc.why)
		}
	}
}

// TestPrintFollower: a follower has a table of its own (applied lsn,
// source, lag), and the primaries' table is not printed without one.
func TestPrintFollower(t *testing.T) {
	var b strings.Builder
	ns := NodeStatus{NodeID: "mx2", Uptime: "1m", Volumes: []VolumeStatus{{Volume: "spool", Role: "follower", Term: 3,
		Follow: &FollowStatus{Source: "10.0.1.7:7400", Connected: true, Applied: 120, SourceLSN: 125, LagRecords: 5, LagSeconds: 0.012}}}}
	if err := PrintStatus(&b, ns); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"APPLIED", "SOURCE LSN", "LAG SECONDS", "spool", "follower", "120", "10.0.1.7:7400", "0.012"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "DURABLE") {
		t.Errorf("the primaries' table printed for a follower alone:\n%s", out)
	}
}
