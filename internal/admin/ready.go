package admin

import (
	"encoding/json"
	"net/http"
	"time"
)

// DefaultReadyWithin is how recently W replicas must have answered for a
// primary to be ready (/readyz) and for `spoolfs status` to count them in
// its QUORUM column: a few probe intervals (replication.PrimaryConfig's
// ProbeInterval, 1 s), short enough that a mail server stops accepting
// mail within seconds of the quorum going away, long enough that one slow
// answer does not flap it.
const DefaultReadyWithin = 3 * time.Second

// DefaultMaxFollowLag is how far behind its source a follower may be and
// still be ready (/readyz): a few seconds, the time a reconnect to another
// replica takes with its catch-up, so that a replica restart does not flap
// it while a follower that stopped following is noticed within seconds.
const DefaultMaxFollowLag = 5 * time.Second

// Readiness is the body of /readyz (JSON), 200 when Ready, else 503: what
// the node serves, and for each part why it is not ready.
type Readiness struct {
	Ready bool `json:"ready"`
	// Reasons: why the node as a whole is not ready (nothing served yet).
	Reasons  []string           `json:"reasons,omitempty"`
	Volumes  []VolumeReadiness  `json:"volumes,omitempty"`
	Replicas []ReplicaReadiness `json:"replicas,omitempty"`
}

// VolumeReadiness is one volume this node serves. A primary is ready when
// it holds its term (not fenced, serving) and W replicas answered within
// ReadyWithin: a write made now would become durable. A follower is ready
// when it is connected to a replica and behind it by less than MaxLag
// (LagSeconds): what it shows is at most that old.
type VolumeReadiness struct {
	Volume string `json:"volume"`
	Role   string `json:"role"` // "primary", "fenced", "follower"
	Term   uint64 `json:"term"`
	W      int    `json:"w"`
	// Answering counts the replicas whose stream is open and that
	// answered within ReadyWithin.
	Answering   int    `json:"replicas_answering"`
	Replicas    int    `json:"replicas"`
	ReadyWithin string `json:"ready_within"`
	Ready       bool   `json:"ready"`
	Reason      string `json:"reason,omitempty"`
	// A follower's: the replica it follows, how far behind it is, the bound.
	Source     string  `json:"source,omitempty"`
	LagRecords uint64  `json:"lag_records,omitempty"`
	LagSeconds float64 `json:"lag_seconds,omitempty"`
	MaxLag     string  `json:"max_lag,omitempty"`
}

// ReplicaReadiness is one replica server of this node: ready when it
// serves and its store is open and writable.
type ReplicaReadiness struct {
	Addr   string `json:"addr"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// settle sets Ready from the parts: every volume and replica ready and no
// node-wide reason.
func (r *Readiness) settle() {
	r.Ready = len(r.Reasons) == 0
	for _, v := range r.Volumes {
		r.Ready = r.Ready && v.Ready
	}
	for _, p := range r.Replicas {
		r.Ready = r.Ready && p.Ready
	}
}

// answerReady writes r as JSON: 200 when ready, 503 otherwise.
func answerReady(w http.ResponseWriter, r Readiness) {
	r.settle()
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
}
