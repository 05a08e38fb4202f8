package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/spoolfs/spoolfs/internal/metrics"
	pb "github.com/spoolfs/spoolfs/proto"
	"github.com/spoolfs/spoolfs/replication"
)

// ReplicaOptions says where a replica listens and keeps its volumes.
type ReplicaOptions struct {
	Listen  string // host:port; port 0 picks a free one (Addr says which)
	DataDir string // one buntdb file per volume; created if missing
	// Creds secures the gRPC server (mTLS); nil: plaintext.
	Creds credentials.TransportCredentials
	// MaxFileSize bounds one file of a volume (0: replication's default).
	MaxFileSize uint64
	// CompactMin is the file size below which a volume's database is never
	// compacted (0: replication.DefaultCompactMin, 64 MiB).
	CompactMin int64
	// AdaptProcs lets the replica set GOMAXPROCS to the number of volumes
	// being shipped to it (at least 1, at most the CPUs), unless GOMAXPROCS
	// is set in the environment. For a process that is a replica and
	// nothing else (adaptProcs in procs.go says why).
	AdaptProcs bool
	// StopGrace is how long a node's Stop lets the replica's calls in
	// flight finish (0: DefaultReplicaStopGrace).
	StopGrace time.Duration
	// WatchBuffer bounds each volume's ring of recent records that
	// followers are served from (0: replication.DefaultWatchBuffer, 64 MiB;
	// negative: no Watch).
	WatchBuffer int64
	// FollowAllow: the node ids that may follow each volume listed (over
	// mTLS), besides its primary; a volume not listed: any node.
	FollowAllow map[string][]string
}

// Replica is one running replica server: the replication service on a
// gRPC server, storing volumes under its data directory.
type Replica struct {
	opts ReplicaOptions
	log  *zap.Logger
	lock *os.File // the data directory's lock, held while serving
	srv  *replication.ReplicaServer
	g    *grpc.Server
	lis  net.Listener

	done     chan struct{} // closed when Serve returned
	serveErr error         // valid after done
}

// StartReplica locks o.DataDir (two replicas on one directory would
// corrupt it), opens the volumes stored there and serves them on o.Listen.
func StartReplica(o ReplicaOptions, log *zap.Logger) (*Replica, error) {
	if o.DataDir == "" {
		return nil, errors.New("replica: no data directory")
	}
	lock, err := lockDataDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	obs := metrics.Default.Replica(o.Listen)
	ropts := []replication.ReplicaOption{replication.WithCompactMin(o.CompactMin), replication.WithObserver(obs)}
	if o.MaxFileSize > 0 {
		ropts = append(ropts, replication.WithLimits(replication.Limits{MaxFileSize: o.MaxFileSize}))
	}
	if o.WatchBuffer != 0 {
		ropts = append(ropts, replication.WithWatchBuffer(max(o.WatchBuffer, 0)))
	}
	if len(o.FollowAllow) > 0 {
		ropts = append(ropts, replication.WithFollowAllow(o.FollowAllow))
	}
	srv, err := replication.NewReplicaServer(o.DataDir, log.Named("replica"), ropts...)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("replica %s: %w", o.DataDir, err)
	}
	if plaintextOutsideLoopback(o.Listen, o.Creds != nil) {
		log.Warn("the replication service listens beyond loopback without TLS: any host that reaches it can take or write volumes; give it certificates (spoolfs certs)",
			zap.String("listen", o.Listen))
	}
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		srv.Close()
		lock.Close()
		return nil, fmt.Errorf("replica: listen: %w", err)
	}
	obs.SetAddr(lis.Addr().String())
	gopts := replication.ServerOptions()
	if o.Creds != nil {
		gopts = append(gopts, grpc.Creds(o.Creds))
	}
	r := &Replica{opts: o, log: log, lock: lock, srv: srv, g: grpc.NewServer(gopts...), lis: lis, done: make(chan struct{})}
	srv.Register(r.g)
	go r.serve()
	if o.AdaptProcs && os.Getenv("GOMAXPROCS") == "" {
		go r.adaptProcs(time.Second)
	}
	log.Info("replica serving", zap.String("listen", r.Addr()), zap.String("data", o.DataDir))
	return r, nil
}

// lockDataDir takes an exclusive flock on DIR/LOCK, created with DIR.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("replica data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("replica data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("replica data dir %s is in use by another spoolfs process", dir)
		}
		return nil, fmt.Errorf("replica data dir %s: lock: %w", dir, err)
	}
	return f, nil
}

func (r *Replica) serve() {
	r.serveErr = r.g.Serve(r.lis)
	close(r.done)
}

// Addr is the address the replica listens on (host:port).
func (r *Replica) Addr() string { return r.lis.Addr().String() }

// DataDir is where the replica keeps its volumes.
func (r *Replica) DataDir() string { return r.opts.DataDir }

// Done is closed when the gRPC server stopped serving (Stop, or a listener
// failure: Err says which).
func (r *Replica) Done() <-chan struct{} { return r.done }

// Err is what serving ended with (nil after Stop); call after Done.
func (r *Replica) Err() error {
	if errors.Is(r.serveErr, grpc.ErrServerStopped) {
		return nil
	}
	return r.serveErr
}

// Status reports the volumes the replica holds (the Status RPC, in process).
func (r *Replica) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return r.srv.Status(ctx, &pb.StatusRequest{})
}

// Stop stops serving: gracefully (calls in flight finish) until ctx ends,
// then at once; then the volumes are closed and the data directory
// unlocked. A primary's stream to this replica ends either way.
func (r *Replica) Stop(ctx context.Context) {
	r.srv.CloseWatches() // followers' streams never end on their own: they switch replica now
	stopped := make(chan struct{})
	go func() { r.g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		r.log.Info("replica: streams still open; closing them", zap.String("listen", r.Addr()))
		r.g.Stop()
		<-stopped
	}
	<-r.done
	if err := r.srv.Close(); err != nil {
		r.log.Warn("replica: close", zap.Error(err))
	}
	r.lock.Close()
	r.log.Info("replica stopped", zap.String("listen", r.Addr()))
}

// watchBuffer maps a configured watch buffer size to
// ReplicaOptions.WatchBuffer: 0 turns Watch off.
func watchBuffer(bytes uint64) int64 {
	if bytes == 0 {
		return -1
	}
	return int64(bytes)
}

// WatchBufferOption is watchBuffer for the command line's --watch-buffer.
func WatchBufferOption(bytes uint64) int64 { return watchBuffer(bytes) }

// DefaultReplicaStopGrace is how long Stop lets calls in flight finish
// when it is given no deadline of its own.
const DefaultReplicaStopGrace = 2 * time.Second

// plaintextOutsideLoopback says whether addr serves the replication
// service to other hosts without TLS.
func plaintextOutsideLoopback(addr string, tlsOn bool) bool {
	if tlsOn || addr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
