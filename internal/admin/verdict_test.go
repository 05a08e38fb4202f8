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
		{"fenced wins", []VolumeStatus{vol("primary", 1, 0, 0, 0), vol("fenced", 0, 0, 0, 0)}, ExitFenced, "fenced-vol is fenced"},
	} {
		code, why := Verdict(NodeStatus{Volumes: tc.vols}, 1000)
		if code != tc.want || !strings.Contains(why, tc.why) || (tc.why == "") != (why == "") {
			t.Errorf("%s: exit %d %q, want %d and %q", tc.name, code, why, tc.want, tc.why)
		}
	}
}
