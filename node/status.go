package node

// The status of what this node serves (/status, `spoolfs status`), built
// from its parts; internal/admin has the types and prints them.

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/spoolfs/spoolfs/proto"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/metrics"
	"github.com/spoolfs/spoolfs/replication"
)

// volumeStatus reports one replicated volume.
func (rv *ReplicatedVolume) volumeStatus() admin.VolumeStatus {
	st := rv.primary.Status()
	vs := admin.VolumeStatus{Volume: st.Volume, Dir: rv.Dir(), Role: "primary", Term: st.Term, Head: st.Head,
		Durable: st.Durable, W: st.W, LogBytes: st.LogBytes, LogFirst: st.LogFirst, NoQuorum: st.QuorumLost, Err: st.Err,
		ReadyWithin: rv.readyWithin.String(), Links: []admin.VolumeReplicaStatus{}}
	if st.Fenced {
		vs.Role = "fenced"
	}
	now := time.Now()
	for _, r := range st.Replicas {
		ago := now.Sub(r.LastAnswer)
		quorum := r.Connected && ago <= rv.readyWithin && !st.Fenced
		if quorum {
			vs.Answering++
		}
		vs.Links = append(vs.Links, admin.VolumeReplicaStatus{Addr: r.Addr, Connected: r.Connected, Acked: r.Acked, Lag: r.Lag,
			Resyncs: r.Resyncs, Installs: r.Installs, Overflows: r.Overflows, Repeats: r.Repeats, Installing: r.Installing,
			LastError: r.LastError, Quorum: quorum, AnsweredAgo: ago, First: r.Quorum, AckLatency: r.AckLatency})
	}
	for _, w := range metrics.Default.WaitTotals(st.Volume) {
		if w.Count == 0 {
			continue
		}
		mean := float64(w.Sum) / float64(w.Count) / float64(time.Millisecond)
		vs.Waits = append(vs.Waits, admin.WaitSummary{Result: w.Outcome, Count: w.Count, MeanMs: mean})
	}
	return vs
}

// Status reports everything this node serves.
func (n *Node) Status(ctx context.Context) admin.NodeStatus {
	vols, reps := n.parts()
	ns := admin.NodeStatus{NodeID: n.id, Uptime: time.Since(n.started).Round(time.Second).String()}
	for _, v := range vols {
		ns.Volumes = append(ns.Volumes, v.volumeStatus())
	}
	for _, r := range reps {
		resp, err := r.Status(ctx)
		rs := admin.ReplicaStatus{Addr: r.Addr()}
		if err == nil {
			rs = admin.ReplicaStatusFromPB(r.Addr(), resp)
		} else {
			rs.Err = err.Error()
		}
		rs.DataDir = r.DataDir()
		ns.Replicas = append(ns.Replicas, rs)
	}
	return ns
}

// QueryReplicas asks each replica for the volumes it stores (the Status
// RPC), in parallel; an unreachable replica has Err set.
func QueryReplicas(ctx context.Context, addrs []string, creds credentials.TransportCredentials) []admin.ReplicaStatus {
	out := make([]admin.ReplicaStatus, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = queryReplica(ctx, a, creds)
		}()
	}
	wg.Wait()
	return out
}

func queryReplica(ctx context.Context, addr string, creds credentials.TransportCredentials) admin.ReplicaStatus {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, append(replication.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return admin.ReplicaStatus{Addr: addr, Err: err.Error()}
	}
	defer conn.Close()
	resp, err := pb.NewReplicaClient(conn).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return admin.ReplicaStatus{Addr: addr, Err: status.Convert(err).Message()}
	}
	return admin.ReplicaStatusFromPB(addr, resp)
}
