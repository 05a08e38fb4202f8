package main

// `spoolfs mount --replicas`: the volume's primary (node.MountReplicated).

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/tlsid"
	"github.com/spoolfs/spoolfs/node"
)

// replicaFlags are the flags of a replicated mount.
type replicaFlags struct {
	replicas       string
	w              int
	logBytes       config.ByteSize
	nodeID         string
	acquireTimeout time.Duration
	readyWithin    time.Duration
	admin          string
	tls            tlsFlags
	client         credentials.TransportCredentials // from tls, set by check
	tlsMaterial    *tlsid.Material                  // its source, whose reloads are logged once the mount has a logger
}

func addReplicaFlags(c *cobra.Command, r *replicaFlags) {
	fl := c.Flags()
	fl.StringVar(&r.replicas, "replicas", "", "the volume's replicas host:port,host:port,host:port: become its primary")
	fl.IntVar(&r.w, "w", 0, "with --replicas: replicas that must hold a change before close/fsync/rename/link return (default: a majority, 2 of 3)")
	fl.Var(&r.logBytes, "log-bytes", "with --replicas: bound of the in-memory log for a lagging replica, e.g. 64MiB, the default (beyond it: a full snapshot)")
	fl.StringVar(&r.nodeID, "node-id", "", "with --replicas: this node's id, recorded with its term (default: the host name)")
	fl.DurationVar(&r.acquireTimeout, "acquire-timeout", 30*time.Second, "with --replicas: how long taking the volume and recovering it may take (a follower: loading it; a promotion: taking it)")
	fl.DurationVar(&r.readyWithin, "ready-within", admin.DefaultReadyWithin, "with --replicas: /readyz answers 503 unless W replicas answered within this")
	fl.StringVar(&r.admin, "admin", "", "with --replicas: serve /metrics, /healthz, /readyz, /status, /promote (a follower), /debug/pprof on host:port")
	addTLSFlags(fl, &r.tls)
}

// check validates the replication flags (the same rules as a node config).
func (r *replicaFlags) check(c *cobra.Command, local bool) error {
	if r.replicas == "" {
		for _, name := range append([]string{"w", "log-bytes", "node-id", "acquire-timeout", "ready-within", "admin"}, tlsFlagNames...) {
			if c.Flags().Changed(name) {
				return fmt.Errorf("--%s: only with --replicas", name)
			}
		}
		return nil
	}
	if r.readyWithin <= 0 {
		return fmt.Errorf("--ready-within %v: want a positive duration, e.g. 3s", r.readyWithin)
	}
	v := config.Volume{Name: "v", MountPoint: "/", Replicas: config.SplitReplicas(r.replicas), W: r.w, LogBytes: r.logBytes}
	cfg := config.Node{NodeID: r.nodeID, Admin: r.admin, Volumes: []config.Volume{v}, TLS: r.tls.config()}
	if err := cfg.Validate(); err != nil { // with --tls-*: the node id is the certificate's
		return flagNames(err)
	}
	r.nodeID = cfg.NodeID
	m, err := cfg.TLS.Files().Material(nil)
	if err != nil {
		return err
	}
	r.tlsMaterial, r.client = m, m.ClientCreds()
	return nil
}

func (r *replicaFlags) options() node.ReplicationOptions {
	return node.ReplicationOptions{NodeID: r.nodeID, Replicas: config.SplitReplicas(r.replicas), W: r.w,
		MaxLogBytes: int64(r.logBytes), AcquireTimeout: r.acquireTimeout, ReadyWithin: r.readyWithin, Creds: r.client}
}

// runReplicated makes this node the volume's primary, mounts it and serves
// it (or runs CMD in it) until unmounted or signalled; then it waits for the
// replicas to hold every record and closes the primary.
func runReplicated(f *mountFlags, child []string, sigs chan os.Signal, log *zap.Logger) error {
	return runOnNode(f, child, sigs, log, "serving", func(ctx context.Context, n *node.Node) (*node.Volume, func(), error) {
		rv, err := n.MountVolume(ctx, f.opts, f.repl.options())
		if err != nil {
			return nil, nil, err
		}
		return rv.Volume, func() {
			rv.Close(f.opts.FlushTimeout)
			n.RemoveVolume(rv)
		}, nil
	})
}

// runFollower mounts the volume as a follower and serves it (or runs CMD
// in it) until unmounted or signalled: the stream stops first, then the
// mount goes. Promoted meanwhile (spoolfs promote), it stops as a primary
// does: the replicas get every record first.
func runFollower(f *mountFlags, child []string, sigs chan os.Signal, log *zap.Logger) error {
	return runOnNode(f, child, sigs, log, "following", func(ctx context.Context, n *node.Node) (*node.Volume, func(), error) {
		r := f.repl.options()
		r.MaxFollowLag = f.maxLag
		fv, err := n.MountFollower(ctx, f.opts, r)
		if err != nil {
			return nil, nil, err
		}
		return fv.Volume, func() {
			fv.Close(f.opts.FlushTimeout)
			n.RemoveFollower(fv)
		}, nil
	})
}

// runOnNode is what a primary and a follower mount share: a node with the
// TLS material and the admin endpoint, the volume mounted by mount (whose
// start a signal cancels), served (or CMD run in it) until unmounted or
// signalled, then closed by what mount returned and, last, the node
// stopped. doing names the serving in the log line ("serving", "following").
func runOnNode(f *mountFlags, child []string, sigs chan os.Signal, log *zap.Logger, doing string,
	mount func(ctx context.Context, n *node.Node) (v *node.Volume, closeVolume func(), err error)) error {
	n := node.NewNode(f.repl.nodeID, log)
	f.repl.tlsMaterial.SetLogger(log)
	n.SetTLS(f.repl.tlsMaterial)
	defer n.Stop(nil) // the admin endpoint, once the volume is done
	if f.repl.admin != "" {
		if _, err := n.StartAdmin(f.repl.admin); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	ctx, release := node.SignalContext(sigs, log)
	v, closeVolume, err := mount(ctx, n)
	sig, signalled := release()
	if err != nil {
		return startFailed(err, sig, signalled, "--acquire-timeout")
	}
	defer closeVolume()
	if signalled {
		sigs <- sig // ServeUntilSignal stops at once
	}
	return serveVolume(v, child, f.launch, sigs, log, doing)
}
