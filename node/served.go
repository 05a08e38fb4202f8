package node

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/admin"
)

// served is a volume a Node serves: one it is the primary of
// (*ReplicatedVolume) or one it follows (*FollowerVolume). The Volume
// both embed gives the mount's part (Dir, Server, Done, the unmount of a
// stop); the rest is what differs by role.
type served interface {
	Dir() string
	Server() *fsactor.Server
	Done() <-chan struct{}
	Detach() error
	unmountForStop() error
	removeDeadMount() bool
	finish() int
	name() string
	flushTimeout() time.Duration
	// Close ends replication (a primary's drain, a follower's stream)
	// after the volume stopped serving.
	Close(drain time.Duration)
	volumeStatus() admin.VolumeStatus
	readiness() admin.VolumeReadiness
	collect(ch chan<- prometheus.Metric)
	// promote makes a follower the primary (admin.ErrNotFollower otherwise).
	promote(ctx context.Context) (admin.PromoteResult, error)
}

// name is the volume's name.
func (v *Volume) name() string { return v.opts.Volume }

// flushTimeout bounds a stop's wait for the replicas (the mount's
// --flush-timeout).
func (v *Volume) flushTimeout() time.Duration { return v.opts.FlushTimeout }

// promote refuses: this node is the volume's primary already.
func (rv *ReplicatedVolume) promote(context.Context) (admin.PromoteResult, error) {
	role := "its primary"
	if rv.primary.Fenced() {
		role = "its fenced primary (a newer term took it; restart this node as a follower to follow it)"
	}
	return admin.PromoteResult{}, fmt.Errorf("volume %s: %w: this node is %s", rv.name(), admin.ErrNotFollower, role)
}

// Promote makes this node the primary of volume, which it follows
// (FollowerVolume.Promote); `spoolfs promote` asks for it through the
// admin endpoint.
func (n *Node) Promote(ctx context.Context, volume string) (admin.PromoteResult, error) {
	vols, _ := n.parts()
	for _, v := range vols {
		if v.name() == volume {
			return v.promote(ctx)
		}
	}
	return admin.PromoteResult{}, fmt.Errorf("volume %s: %w (it serves %s)", volume, admin.ErrNoSuchVolume, namesOf(vols))
}

func namesOf(vols []served) string {
	if len(vols) == 0 {
		return "no volume"
	}
	s := ""
	for i, v := range vols {
		if i > 0 {
			s += ", "
		}
		s += v.name()
	}
	return s
}
