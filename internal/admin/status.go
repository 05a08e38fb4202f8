package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
)

// NodeStatus is what a node reports on its admin endpoint (/status, JSON)
// and what `spoolfs status` prints.
type NodeStatus struct {
	NodeID   string          `json:"node_id"`
	Uptime   string          `json:"uptime"`
	Volumes  []VolumeStatus  `json:"volumes,omitempty"`  // mounted here: as primary, or follower
	Replicas []ReplicaStatus `json:"replicas,omitempty"` // replica servers in this process
}

// VolumeStatus is one volume this node mounts: as its primary (the
// fields below), or as a follower (Role "follower": Term and Follow; no
// replica links).
type VolumeStatus struct {
	Volume string `json:"volume"`
	Dir    string `json:"dir"`
	// Role: "primary", "fenced" once a newer term took it, or "follower".
	Role     string `json:"role"`
	Term     uint64 `json:"term"`        // a follower's: the term of the last record it applied
	Head     uint64 `json:"head_lsn"`    // last record made
	Durable  uint64 `json:"durable_lsn"` // last record on W replicas
	W        int    `json:"w"`
	LogBytes int64  `json:"log_bytes"`
	LogFirst uint64 `json:"log_first_lsn"`         // first record the log holds
	NoQuorum bool   `json:"quorum_lost,omitempty"` // a wait timed out: waits answer EIO at once until its record is durable
	// Answering counts the replicas whose stream is open and that
	// answered within ReadyWithin: below W, the volume is below quorum
	// (a write now would wait and fail with EIO).
	Answering   int                   `json:"replicas_answering"`
	ReadyWithin string                `json:"ready_within"`
	Err         string                `json:"error,omitempty"`
	Links       []VolumeReplicaStatus `json:"replicas"`
	Waits       []WaitSummary         `json:"waits,omitempty"`
	Follow      *FollowStatus         `json:"follow,omitempty"` // a follower's
}

// FollowStatus is where a follower follows its volume from and how far
// behind it is.
type FollowStatus struct {
	Source    string `json:"source"` // the replica it streams from now (or last did)
	Connected bool   `json:"connected"`
	Applied   uint64 `json:"applied_lsn"` // the last record it applied (shown to the kernel)
	SourceLSN uint64 `json:"source_lsn"`  // the source's last known lsn
	// LagRecords: SourceLSN - Applied. LagSeconds: how long the oldest
	// record it lacks has been waiting, measured as the time since it
	// last applied one while lacking some (0 when it lacks none).
	LagRecords  uint64  `json:"lag_records"`
	LagSeconds  float64 `json:"lag_seconds"`
	Resyncs     int     `json:"resyncs"`    // snapshots it loaded in place of records
	Reconnects  int     `json:"reconnects"` // watch streams opened again
	MaxLag      string  `json:"max_lag"`    // its readiness bound on LagSeconds
	LastApplied string  `json:"last_applied_ago,omitempty"`
	Err         string  `json:"error,omitempty"` // why its last stream ended
}

// VolumeReplicaStatus is one replica of a volume, as its primary sees it.
type VolumeReplicaStatus struct {
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	Acked     uint64 `json:"acked_lsn"`
	Lag       uint64 `json:"lag"` // records it lacks
	Resyncs   int    `json:"resyncs"`
	// Installs started, those the writes outran (overflows), and snapshots
	// needed again before the replica caught up after one (repeats: an
	// install loop); installing while an install or its catch-up runs.
	Installs   int    `json:"installs"`
	Overflows  int    `json:"install_overflows"`
	Repeats    int    `json:"install_repeats"`
	Installing bool   `json:"installing"`
	LastError  string `json:"last_error,omitempty"`
	// Quorum: it counts toward the write quorum now — its stream is open
	// and it answered (an ack or a probe) within the volume's
	// ReadyWithin.
	Quorum bool `json:"quorum"`
	// AnsweredAgo is how long ago it last answered.
	AnsweredAgo time.Duration `json:"answered_ago_ns"`
	// First: a wait sends to it at once (one of the W fastest lately);
	// otherwise it trails by up to the ship delay (docs/architecture.md,
	// "quorum first").
	First      bool          `json:"first"`
	AckLatency time.Duration `json:"ack_latency_ns"` // moving average, send to ack
}

// WaitSummary counts the durability waits of one outcome.
type WaitSummary struct {
	Result string  `json:"result"`
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
}

// ReplicaStatus is one replica server of this node and the volumes it
// stores (the Status RPC).
type ReplicaStatus struct {
	Addr    string             `json:"addr"`
	DataDir string             `json:"data_dir,omitempty"`
	Volumes []ReplicaVolStatus `json:"volumes"`
	Err     string             `json:"error,omitempty"`
}

// ReplicaVolStatus is one volume stored on a replica.
type ReplicaVolStatus struct {
	Volume       string `json:"volume"`
	AcceptedTerm uint64 `json:"accepted_term"`
	Holder       string `json:"holder"`
	LastTerm     uint64 `json:"last_term"`
	LSN          uint64 `json:"lsn"`
	Inodes       uint64 `json:"inodes"`
	DataBytes    uint64 `json:"data_bytes"`
	Commits      uint64 `json:"commits"`
	Compactions  uint64 `json:"compactions"`
	// ReceivedBytes counts the bytes of Ship and Install messages the
	// replica received for the volume since it started.
	ReceivedBytes uint64 `json:"received_bytes"`
	// Failed says why the volume's storage failed, while it does (the
	// replica opens it again when the primary reconnects).
	Failed string `json:"failed,omitempty"`
}

// ReplicaStatusFromPB converts a replica's Status RPC answer.
func ReplicaStatusFromPB(addr string, resp *pb.StatusResponse) ReplicaStatus {
	rs := ReplicaStatus{Addr: addr, Volumes: []ReplicaVolStatus{}}
	for _, v := range resp.GetVolumes() {
		rs.Volumes = append(rs.Volumes, ReplicaVolStatus{Volume: v.Volume, AcceptedTerm: v.AcceptedTerm,
			Holder: v.Holder, LastTerm: v.LastTerm, LSN: v.Lsn, Inodes: v.Inodes, DataBytes: v.DataBytes, Commits: v.Commits,
			Compactions: v.Compactions, ReceivedBytes: v.ReceivedBytes, Failed: v.Failed})
	}
	return rs
}

// PrintStatus writes a node's status as tables: the volumes it is the
// primary of, with one row per replica (term, lsns, lag), the volumes it
// follows (applied lsn, source, lag), then the volumes its replica servers
// store.
func PrintStatus(w io.Writer, ns NodeStatus) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node %s, up %s\n\n", ns.NodeID, ns.Uptime)
	var primaries, followers []VolumeStatus
	for _, v := range ns.Volumes {
		if v.Follow != nil {
			followers = append(followers, v)
		} else {
			primaries = append(primaries, v)
		}
	}
	if len(primaries) > 0 {
		fmt.Fprintln(tw, "VOLUME\tROLE\tTERM\tHEAD\tDURABLE\tW\tANSWERING\tREPLICA\tCONNECTED\tANSWERED\tQUORUM\tFIRST\tACK LATENCY\tACKED\tLAG\tRESYNCS\tLAST ERROR")
		for _, v := range primaries {
			printVolumeRows(tw, v)
		}
		fmt.Fprintln(tw)
	}
	if len(followers) > 0 {
		fmt.Fprintln(tw, "VOLUME\tROLE\tTERM\tAPPLIED\tSOURCE\tCONNECTED\tSOURCE LSN\tLAG\tLAG SECONDS\tRESYNCS\tRECONNECTS\tLAST ERROR")
		for _, v := range followers {
			printFollowerRow(tw, v)
		}
		fmt.Fprintln(tw)
	}
	if len(ns.Replicas) > 0 {
		fmt.Fprintln(tw, "REPLICA\tVOLUME\tACCEPTED TERM\tLAST TERM\tLSN\tINODES\tBYTES\tCOMMITS\tHOLDER")
		for _, r := range ns.Replicas {
			PrintReplicaRows(tw, r)
		}
	}
	return tw.Flush()
}

func printVolumeRows(w io.Writer, v VolumeStatus) {
	for i, l := range v.Links {
		name, role, term, head, durable, wq := v.Volume, v.Role, fmt.Sprint(v.Term), fmt.Sprint(v.Head), fmt.Sprint(v.Durable), fmt.Sprint(v.W)
		answering := fmt.Sprintf("%d/%d", v.Answering, len(v.Links))
		if v.NoQuorum && role == "primary" {
			role = "primary (quorum lost)"
		}
		if i > 0 {
			name, role, term, head, durable, wq, answering = "", "", "", "", "", "", ""
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s ago\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", name, role, term, head, durable, wq, answering,
			l.Addr, yesNo(l.Connected), l.AnsweredAgo.Round(100*time.Millisecond), yesNo(l.Quorum), yesNo(l.First),
			l.AckLatency.Round(time.Microsecond), l.Acked, l.Lag, l.Resyncs, shorten(l.LastError, 60))
	}
}

func printFollowerRow(w io.Writer, v VolumeStatus) {
	f := v.Follow
	fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%.3f\t%d\t%d\t%s\n", v.Volume, v.Role, v.Term, f.Applied,
		f.Source, yesNo(f.Connected), f.SourceLSN, f.LagRecords, f.LagSeconds, f.Resyncs, f.Reconnects, shorten(f.Err, 60))
}

// PrintReplicaRows writes one replica's volumes as rows of the replica
// table (REPLICA VOLUME ACCEPTED-TERM LAST-TERM LSN INODES BYTES COMMITS HOLDER).
func PrintReplicaRows(w io.Writer, r ReplicaStatus) {
	if r.Err != "" {
		fmt.Fprintf(w, "%s\t(unreachable: %s)\n", r.Addr, shorten(r.Err, 80))
		return
	}
	if len(r.Volumes) == 0 {
		fmt.Fprintf(w, "%s\t(no volumes)\n", r.Addr)
	}
	vols := append([]ReplicaVolStatus(nil), r.Volumes...)
	sort.Slice(vols, func(i, j int) bool { return vols[i].Volume < vols[j].Volume })
	for i, v := range vols {
		addr := r.Addr
		if i > 0 {
			addr = ""
		}
		if v.Failed != "" {
			fmt.Fprintf(w, "%s\t%s\t%d\t(storage failed: %s)\n", addr, v.Volume, v.AcceptedTerm, shorten(v.Failed, 80))
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", addr, v.Volume, v.AcceptedTerm, v.LastTerm, v.LSN,
			v.Inodes, v.DataBytes, v.Commits, v.Holder)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// FetchStatus asks a node's admin endpoint (host:port) for its status.
func FetchStatus(ctx context.Context, admin string) (NodeStatus, error) {
	var ns NodeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	if err != nil {
		return ns, fmt.Errorf("status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ns, fmt.Errorf("status: no admin endpoint answers at %s (is the node running with --admin %s?): %w", admin, admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ns, fmt.Errorf("status: %s answered %s", admin, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ns); err != nil {
		return ns, fmt.Errorf("status: %s: %w", admin, err)
	}
	return ns, nil
}
