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
				rv.opts.Volume, rv.Dir(), admin.HealthTimeout, err))
		}
	}
	return append(bad, replicasDown(reps)...)
}

// Unready says which volumes do not serve or are fenced, and which
// replica servers stopped.
func (v adminView) Unready() []string {
	vols, reps := v.n.parts()
	var bad []string
	if len(vols) == 0 && len(reps) == 0 {
		bad = append(bad, "nothing is served yet")
	}
	for _, rv := range vols {
		select {
		case <-rv.Done():
			bad = append(bad, "volume "+rv.opts.Volume+": not serving")
			continue
		default:
		}
		if rv.primary.Fenced() {
			bad = append(bad, "volume "+rv.opts.Volume+": fenced (another node holds a newer term; mutations answer EROFS)")
		}
	}
	return append(bad, replicasDown(reps)...)
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
