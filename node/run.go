package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/tlsid"
)

// Node is one spoolfs process serving several things at once: replica
// servers, volumes it is the primary of, volumes it follows, and an admin
// endpoint. `spoolfs
// run` builds one from a Config (StartConfig), the embedded cluster from
// EmbeddedOptions (StartEmbedded).
type Node struct {
	id      string
	log     *zap.Logger
	started time.Time

	mu       sync.Mutex
	replicas []*Replica
	volumes  []served // primaries and followers
	admin    *admin.Admin
	tls      *tlsid.Material // the node's mTLS material, for metrics (nil without)
	ended    chan ended      // a volume or replica stopped serving
	quit     chan struct{}   // closed by Stop: nobody reads ended any more
	quitOnce sync.Once
}

// ended says which part of the node stopped serving on its own.
type ended struct {
	vol served
	rep *Replica
}

// NewNode makes an empty node; add replicas, volumes and an admin endpoint.
func NewNode(id string, log *zap.Logger) *Node {
	return &Node{id: id, log: log, started: time.Now(), ended: make(chan ended), quit: make(chan struct{})}
}

// SetTLS names the node's mTLS material: /metrics reports its expiry and
// reloads.
func (n *Node) SetTLS(m *tlsid.Material) {
	n.mu.Lock()
	n.tls = m
	n.mu.Unlock()
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

func (n *Node) parts() ([]served, []*Replica) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]served(nil), n.volumes...), append([]*Replica(nil), n.replicas...)
}

// StartReplica starts a replica server in this node.
func (n *Node) StartReplica(o ReplicaOptions) (*Replica, error) {
	r, err := StartReplica(o, n.log)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.replicas = append(n.replicas, r)
	n.mu.Unlock()
	go n.watch(r.Done(), ended{rep: r})
	return r, nil
}

// MountVolume makes this node the primary of a volume and mounts it
// (MountReplicated). ctx bounds the recovery.
func (n *Node) MountVolume(ctx context.Context, o config.MountOptions, r ReplicationOptions) (*ReplicatedVolume, error) {
	if r.NodeID == "" {
		r.NodeID = n.id
	}
	rv, err := MountReplicated(ctx, o, r, n.log)
	if err != nil {
		return nil, err
	}
	n.add(rv)
	return rv, nil
}

// MountFollower mounts a volume this node follows (MountFollower); ctx
// bounds the loading of its snapshot. `spoolfs promote` makes it the
// primary (Node.Promote).
func (n *Node) MountFollower(ctx context.Context, o config.MountOptions, r ReplicationOptions) (*FollowerVolume, error) {
	if r.NodeID == "" {
		r.NodeID = n.id
	}
	fv, err := MountFollower(ctx, o, r, n.log)
	if err != nil {
		return nil, err
	}
	n.add(fv)
	return fv, nil
}

// RemoveFollower forgets a follower its caller stopped and closed itself
// (`spoolfs mount --follow`).
func (n *Node) RemoveFollower(fv *FollowerVolume) { n.remove(fv) }

// add serves v in the node: Serve hears when it ends.
func (n *Node) add(v served) {
	n.mu.Lock()
	n.volumes = append(n.volumes, v)
	n.mu.Unlock()
	go n.watch(v.Done(), ended{vol: v})
}

// watch tells Serve when done is closed, unless the node is stopping.
func (n *Node) watch(done <-chan struct{}, e ended) {
	select {
	case <-done:
	case <-n.quit:
		return
	}
	select {
	case n.ended <- e:
	case <-n.quit:
	}
}

// RemoveVolume forgets a volume its caller stopped and closed itself
// (`spoolfs mount --replicas` serves its one volume with ServeUntilSignal).
func (n *Node) RemoveVolume(rv *ReplicatedVolume) { n.remove(rv) }

func (n *Node) remove(sv served) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, v := range n.volumes {
		if v == sv {
			n.volumes = append(n.volumes[:i:i], n.volumes[i+1:]...)
			return
		}
	}
}

// StartConfig starts what c describes: its replica server (listen,
// data_dir), its admin endpoint, then each volume, in order. ctx bounds
// the start (a signal cancels it). On error what was started is stopped.
func (n *Node) StartConfig(ctx context.Context, c *config.Node) error {
	m, err := c.TLS.Files().Material(n.log)
	if err != nil {
		return err
	}
	n.SetTLS(m)
	server, client := m.ServerCreds(), m.ClientCreds()
	if c.Listen != "" {
		// A node that is only a replica sizes GOMAXPROCS to the volumes
		// it serves (procs.go); one that also mounts volumes leaves it.
		adapt := len(c.Volumes) == 0
		ro := ReplicaOptions{Listen: c.Listen, DataDir: c.DataDir, AdaptProcs: adapt, Creds: server, FollowAllow: c.FollowAllowlist()}
		if c.WatchBuffer != nil {
			ro.WatchBuffer = watchBuffer(uint64(*c.WatchBuffer))
		}
		if _, err := n.StartReplica(ro); err != nil {
			return err
		}
	}
	if c.Admin != "" {
		if _, err := n.StartAdmin(c.Admin); err != nil {
			n.Stop(nil)
			return err
		}
	}
	for i := range c.Volumes {
		vc := &c.Volumes[i]
		o, err := vc.MountOptions(fmt.Sprintf("volumes[%d]", i))
		if err == nil {
			r := replicationOf(vc, c.NodeID)
			r.Creds = client
			if o.Follower {
				_, err = n.MountFollower(ctx, o, r)
			} else {
				_, err = n.MountVolume(ctx, o, r)
			}
		}
		if err != nil {
			n.Stop(nil)
			return err
		}
	}
	return nil
}

// Serve serves until a signal arrives on sigs, then stops everything
// (Stop) and returns the exit status: 0 after a clean stop. A volume
// unmounted from outside ends its primary; the node goes on serving the
// rest, and returns when nothing is left. A replica server failing stops
// the node (status 1).
func (n *Node) Serve(sigs <-chan os.Signal) int {
	code := 0
	for {
		select {
		case s := <-sigs:
			n.log.Info("stopping", zap.Stringer("signal", s))
			return max(code, n.Stop(sigs))
		case e := <-n.ended:
			if e.rep != nil {
				n.log.Error("replica server stopped", zap.String("listen", e.rep.Addr()), zap.Error(e.rep.Err()))
				return max(1, n.Stop(sigs))
			}
			if e.vol != nil {
				code = max(code, n.volumeEnded(e.vol))
			}
			if n.empty() {
				n.log.Info("nothing left to serve")
				return max(code, n.Stop(sigs))
			}
		}
	}
}

// volumeEnded handles a volume that stopped serving without being asked
// (unmounted from outside, or its connection aborted).
func (n *Node) volumeEnded(rv served) int {
	n.remove(rv)
	code := 0
	if rv.removeDeadMount() {
		code = 1
	} else {
		n.log.Info("unmounted from outside; its replication stops", zap.String("dir", rv.Dir()))
		code = rv.finish()
	}
	rv.Close(rv.flushTimeout())
	return code
}

func (n *Node) empty() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.volumes) == 0 && len(n.replicas) == 0
}

// Stop unmounts every volume (retrying while busy for its UnmountTimeout,
// then lazily), waits until each served its last op, drains and closes
// its primary, then stops the replica servers and the admin endpoint. A
// second signal on sigs (nil: none) forces: lazy unmounts and return 1 at
// once. It returns the exit status.
func (n *Node) Stop(sigs <-chan os.Signal) int {
	n.quitOnce.Do(func() { close(n.quit) })
	n.mu.Lock()
	vols, reps, admin := n.volumes, n.replicas, n.admin
	n.volumes, n.replicas, n.admin = nil, nil, nil
	n.mu.Unlock()
	code, forced := stopVolumes(vols, sigs, n.log)
	if forced {
		return 1
	}
	stopReplicas(reps)
	if admin != nil {
		admin.Stop()
	}
	return code
}

// stopVolumes unmounts vols in parallel and closes their primaries.
func stopVolumes(vols []served, sigs <-chan os.Signal, log *zap.Logger) (code int, forced bool) {
	var wg sync.WaitGroup
	for _, rv := range vols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rv.unmountForStop(); err != nil {
				log.Error("unmount failed; signal again to force", zap.String("dir", rv.Dir()), zap.Error(err))
			}
		}()
	}
	for _, rv := range vols {
		select {
		case <-rv.Done():
		case s := <-sigs:
			log.Warn("second signal: forcing lazy unmounts and exiting now", zap.Stringer("signal", s))
			for _, v := range vols {
				if err := v.Detach(); err != nil {
					log.Error("lazy unmount failed", zap.String("dir", v.Dir()), zap.Error(err))
				}
			}
			return 1, true
		}
	}
	wg.Wait()
	for _, rv := range vols {
		code = max(code, rv.finish())
		wg.Add(1)
		go func() { defer wg.Done(); rv.Close(rv.flushTimeout()) }()
	}
	wg.Wait()
	return code, false
}

func stopReplicas(reps []*Replica) {
	var wg sync.WaitGroup
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			grace := r.opts.StopGrace
			if grace <= 0 {
				grace = DefaultReplicaStopGrace
			}
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			r.Stop(ctx)
		}()
	}
	wg.Wait()
}

// SignalContext returns a context that a signal arriving on sigs during a
// long start (recovery may take a while) cancels, and release, which stops
// watching and returns that signal, if one came. Call release before
// Serve, which reads sigs itself.
func SignalContext(sigs <-chan os.Signal, log *zap.Logger) (ctx context.Context, release func() (os.Signal, bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan os.Signal, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-sigs:
			log.Info("signal during start: giving up", zap.Stringer("signal", s))
			got <- s
			cancel()
		case <-stop:
		}
	}()
	return ctx, func() (os.Signal, bool) {
		close(stop)
		<-done
		cancel()
		select {
		case s := <-got:
			return s, true
		default:
			return nil, false
		}
	}
}

// IsStartCanceled says whether err comes from a start given up because of a
// signal (SignalContext).
func IsStartCanceled(err error) bool { return errors.Is(err, context.Canceled) }
