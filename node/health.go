package node

import (
	"context"
	"fmt"

	"github.com/spoolfs/spoolfs/internal/admin"
)

// StartAdmin serves the admin endpoint of this node on addr
// (internal/admin): /metrics from nodeCollector, /healthz, /readyz and
// /status from the node's parts.
func (n *Node) StartAdmin(addr string) (*admin.Admin, error) {
	a, err := admin.Start(addr, adminView{n}, &nodeCollector{n: n}, n.log)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.admin = a
	n.mu.Unlock()
	return a, nil
}

// adminView is the node as its admin endpoint reads it (admin.Source).
type adminView struct{ n *Node }

// Status reports everything this node serves.
func (v adminView) Status(ctx context.Context) admin.NodeStatus { return v.n.Status(ctx) }

// Promote promotes the node's follower of volume (Node.Promote).
func (v adminView) Promote(ctx context.Context, volume string) (admin.PromoteResult, error) {
	return v.n.Promote(ctx, volume)
}

// Unhealthy asks each volume's actor to step an empty event
// (Server.Ping) before ctx ends. It never touches the mount: a FUSE
// request from the process that serves it is the hazard of
// docs/failures.md, finding 1 (a SIGKILL while its own actor holds the
// request leaves a zombie holding /dev/fuse). A stuck actor is also
// reported by the watchdog, with stacks.
func (v adminView) Unhealthy(ctx context.Context) []string {
	vols, reps := v.n.parts()
	var bad []string
	for _, rv := range vols {
		if err := rv.Server().Ping(ctx); err != nil {
			bad = append(bad, fmt.Sprintf("volume %s at %s: the actor did not step within %v: %v",
				rv.name(), rv.Dir(), admin.HealthTimeout, err))
		}
	}
	return append(bad, replicasDown(reps)...)
}

// Readiness says, for each volume, whether it holds its term and W
// replicas answered within its bound, and for each replica server whether
// its store is open and writable (admin.Readiness; /readyz). A volume
// still recovering is not in the node yet: with nothing else served, the
// node is not ready.
func (v adminView) Readiness() admin.Readiness {
	vols, reps := v.n.parts()
	var r admin.Readiness
	if len(vols) == 0 && len(reps) == 0 {
		r.Reasons = append(r.Reasons, "nothing is served yet (a volume still recovering, or none configured)")
	}
	for _, rv := range vols {
		r.Volumes = append(r.Volumes, rv.readiness())
	}
	for _, rep := range reps {
		r.Replicas = append(r.Replicas, rep.readiness())
	}
	return r
}

// readiness is the volume's part of /readyz. A primary is ready when it
// serves, is not fenced and W replicas answered within readyWithin. (A
// follower's is in follower.go.)
func (rv *ReplicatedVolume) readiness() admin.VolumeReadiness {
	st := rv.primary.Status()
	r := admin.VolumeReadiness{Volume: st.Volume, Role: "primary", Term: st.Term, W: st.W, Replicas: len(st.Replicas),
		Answering: rv.primary.Answering(rv.readyWithin), ReadyWithin: rv.readyWithin.String()}
	select {
	case <-rv.Done():
		r.Reason = "not serving: the mount ended"
		return r
	default:
	}
	switch {
	case st.Fenced:
		r.Role, r.Answering = "fenced", 0
		r.Reason = "fenced: another node holds a newer term; mutations answer EROFS"
	case r.Answering < st.W:
		r.Reason = fmt.Sprintf("below quorum: %d of %d replicas answered within %v, %d needed; close, fsync and rename would wait and fail with EIO",
			r.Answering, r.Replicas, rv.readyWithin, st.W)
	default:
		r.Ready = true
	}
	return r
}

// readiness is the replica server's part of /readyz: it serves, and its
// store is open and writable.
func (rep *Replica) readiness() admin.ReplicaReadiness {
	r := admin.ReplicaReadiness{Addr: rep.Addr()}
	select {
	case <-rep.Done():
		r.Reason = "not serving"
		return r
	default:
	}
	if err := rep.srv.Unready(); err != nil {
		r.Reason = err.Error()
		return r
	}
	r.Ready = true
	return r
}

// replicasDown names the replica servers that stopped serving.
func replicasDown(reps []*Replica) []string {
	var down []string
	for _, rep := range reps {
		select {
		case <-rep.Done():
			down = append(down, "replica "+rep.Addr()+": not serving")
		default:
		}
	}
	return down
}
