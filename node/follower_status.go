package node

// What the admin endpoint reports of a follower (status, readiness,
// metrics); once promoted, what it reports of the primary it became.

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolfs/spoolfs/internal/admin"
)

// Follower metrics read when scraped (the applied records and their
// delay are observed as they happen: internal/metrics).
var (
	mFollowApplied  = prometheus.NewDesc("spoolfs_follower_applied_lsn", "The last record a follower applied to its mount (or its snapshot's).", volLabels, nil)
	mFollowSource   = prometheus.NewDesc("spoolfs_follower_source_lsn", "The last record the follower's source replica holds, as last heard.", volLabels, nil)
	mFollowLag      = prometheus.NewDesc("spoolfs_follower_lag_records", "Records a follower lacks that its source replica holds.", volLabels, nil)
	mFollowLagSecs  = prometheus.NewDesc("spoolfs_follower_lag_seconds", "How far behind its source a follower is: the delay of its last batch, or, while it lacks records, the time since it last applied one if longer.", volLabels, nil)
	mFollowConn     = prometheus.NewDesc("spoolfs_follower_connected", "1 while a follower streams the volume's records from a replica.", volLabels, nil)
	mFollowResyncs  = prometheus.NewDesc("spoolfs_follower_resyncs_total", "Snapshots a follower loaded in place of records (its source could no longer stream from its position, or a record did not apply).", volLabels, nil)
	mFollowReconns  = prometheus.NewDesc("spoolfs_follower_reconnects_total", "Watch streams of a follower that ended (a replica went away or went silent) and were opened again, on another replica if one is ahead.", volLabels, nil)
	followerMetrics = []*prometheus.Desc{mFollowApplied, mFollowSource, mFollowLag, mFollowLagSecs, mFollowConn, mFollowResyncs, mFollowReconns}
)

// followView is a follower's state at one moment.
type followView struct {
	st    admin.FollowStatus
	term  uint64
	state string // "" while a stream is applied, else promoting, resuming, stopped
}

// view reads the follower's state; nil once promoted.
func (fv *FollowerVolume) view() (*followView, *ReplicatedVolume) {
	fv.mu.Lock()
	f, rv, state, lastErr := fv.follower, fv.primary, fv.state, fv.lastErr
	fv.mu.Unlock()
	if rv != nil {
		return nil, rv
	}
	v := &followView{state: state, st: admin.FollowStatus{Applied: fv.Server().AppliedLSN(), MaxLag: fv.r.MaxFollowLag.String(), Err: lastErr}}
	if f == nil {
		v.st.LagSeconds = -1 // unknown
		return v, nil
	}
	s := f.Status()
	v.term = s.Term
	v.st.Source, v.st.Connected, v.st.SourceLSN = s.Replica, s.Connected, s.SourceLSN
	v.st.Resyncs, v.st.Reconnects = int(s.Resyncs), int(s.Reconnects)
	if s.Err != nil {
		v.st.Err = s.Err.Error()
	} else {
		v.st.Err = ""
	}
	if s.SourceLSN > s.LSN {
		v.st.LagRecords = s.SourceLSN - s.LSN
	}
	lag := time.Duration(fv.obs.lastLag.Load())
	if !s.LastApplied.IsZero() {
		ago := time.Since(s.LastApplied)
		v.st.LastApplied = ago.Round(time.Millisecond).String()
		if v.st.LagRecords > 0 {
			lag = max(lag, ago)
		}
	}
	v.st.LagSeconds = lag.Seconds()
	return v, nil
}

// volumeStatus reports the follower (admin.VolumeStatus.Follow), or the
// primary it became.
func (fv *FollowerVolume) volumeStatus() admin.VolumeStatus {
	v, rv := fv.view()
	if rv != nil {
		return rv.volumeStatus()
	}
	role := "follower"
	if v.state != "" {
		role = "follower (" + v.state + ")"
	}
	st := v.st
	st.LagSeconds = max(st.LagSeconds, 0)
	return admin.VolumeStatus{Volume: fv.name(), Dir: fv.Dir(), Role: role, Term: v.term,
		ReadyWithin: fv.r.ReadyWithin.String(), Links: []admin.VolumeReplicaStatus{}, Follow: &st}
}

// readiness is the follower's part of /readyz: ready while serving,
// connected to a replica and behind it by less than its max lag.
func (fv *FollowerVolume) readiness() admin.VolumeReadiness {
	v, rv := fv.view()
	if rv != nil {
		return rv.readiness()
	}
	r := admin.VolumeReadiness{Volume: fv.name(), Role: "follower", Term: v.term, Replicas: len(fv.r.Replicas),
		Source: v.st.Source, LagRecords: v.st.LagRecords, LagSeconds: max(v.st.LagSeconds, 0), MaxLag: v.st.MaxLag}
	if v.st.Connected {
		r.Answering = 1
	}
	select {
	case <-fv.Done():
		r.Reason = "not serving: the mount ended"
		return r
	default:
	}
	switch {
	case v.state != "":
		r.Reason = fmt.Sprintf("%s: not following now (%s)", v.state, orNone(v.st.Err))
	case !v.st.Connected:
		r.Reason = fmt.Sprintf("connected to no replica (%s); it shows the volume as of lsn %d", orNone(v.st.Err), v.st.Applied)
	case v.st.LagSeconds >= fv.r.MaxFollowLag.Seconds():
		r.Reason = fmt.Sprintf("lagging: %.3fs (%d records) behind %s, the bound is %v", v.st.LagSeconds, v.st.LagRecords, v.st.Source, fv.r.MaxFollowLag)
	default:
		r.Ready = true
	}
	return r
}

func orNone(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

// collect reports the follower's actor and stream, or the primary it
// became.
func (fv *FollowerVolume) collect(ch chan<- prometheus.Metric) {
	v, rv := fv.view()
	if rv != nil {
		rv.collect(ch)
		return
	}
	name := fv.name()
	counter, gauge := emitters(ch)
	collectActor(ch, name, fv.Server(), 0)
	gauge(mFollowApplied, float64(v.st.Applied), name)
	gauge(mFollowSource, float64(v.st.SourceLSN), name)
	gauge(mFollowLag, float64(v.st.LagRecords), name)
	gauge(mFollowLagSecs, max(v.st.LagSeconds, 0), name)
	gauge(mFollowConn, b2f(v.st.Connected), name)
	counter(mFollowResyncs, uint64(v.st.Resyncs), name)
	counter(mFollowReconns, uint64(v.st.Reconnects), name)
}
