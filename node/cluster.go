package node

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
)

// EmbeddedOptions describe the embedded cluster of `spoolfs run
// --embedded` (and `make run`): a whole replicated system in one process.
type EmbeddedOptions struct {
	DataDir  string              // replica-1, replica-2, ... live under it and persist
	Mount    config.MountOptions // the volume and where to mount it
	Replicas int                 // replica servers (0: 3)
	W        int                 // write quorum (0: a majority)
	// Admin is the admin endpoint's address ("" off). If it is taken and
	// AdminFallback is set, a free port on 127.0.0.1 is used instead.
	Admin          string
	AdminFallback  bool
	LogBytes       int64         // the primary's in-memory log bound (0: 64 MiB)
	AcquireTimeout time.Duration // bound of taking the volume and recovering it (0: 30s)
	// Out hears where the volume is mounted and how to look at it, with
	// Command as the name of this program (default "spoolfs").
	Out     io.Writer
	Command string
}

// StartEmbedded starts the embedded cluster in this node: o.Replicas
// replica servers on free 127.0.0.1 ports, each with its own data
// directory under o.DataDir (so a second start recovers the volume from
// them), this node as the primary of o.Mount.Volume mounted at
// o.Mount.Dir, and the admin endpoint. Everything runs in this one process
// but talks as separate nodes do: gRPC over loopback TCP, one buntdb file
// per replica, fsynced. ctx bounds the start. On error what was started is
// stopped.
func (n *Node) StartEmbedded(ctx context.Context, o EmbeddedOptions) error {
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if abs, err := filepath.Abs(o.DataDir); err == nil {
		o.DataDir = abs
	}
	if err := config.CheckW("--w", o.W, o.Replicas); err != nil {
		return err
	}
	var addrs, dirs []string
	for i := 1; i <= o.Replicas; i++ {
		dir := filepath.Join(o.DataDir, fmt.Sprintf("replica-%d", i))
		r, err := n.StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: dir})
		if err != nil {
			n.Stop(nil)
			return err
		}
		addrs, dirs = append(addrs, r.Addr()), append(dirs, dir)
	}
	admin, err := n.startEmbeddedAdmin(o)
	if err != nil {
		n.Stop(nil)
		return err
	}
	rv, err := n.MountVolume(ctx, o.Mount, ReplicationOptions{Replicas: addrs, W: o.W,
		MaxLogBytes: o.LogBytes, AcquireTimeout: o.AcquireTimeout})
	if err != nil {
		n.Stop(nil)
		return err
	}
	if o.Out != nil {
		printEmbedded(o.Out, o.Command, rv, addrs, dirs, admin)
	}
	return nil
}

func (n *Node) startEmbeddedAdmin(o EmbeddedOptions) (*admin.Admin, error) {
	if o.Admin == "" {
		return nil, nil
	}
	a, err := n.StartAdmin(o.Admin)
	if err != nil && o.AdminFallback {
		n.log.Warn("admin address taken; using a free port", zap.String("wanted", o.Admin), zap.Error(err))
		a, err = n.StartAdmin("127.0.0.1:0")
	}
	return a, err
}

// printEmbedded says where the volume is and how to look at it.
func printEmbedded(w io.Writer, prog string, rv *ReplicatedVolume, addrs, dirs []string, adm *admin.Admin) {
	if prog == "" {
		prog = "spoolfs"
	}
	st := rv.primary.Status()
	fmt.Fprintf(w, "\nspoolfs: volume %s is mounted at %s (term %d, lsn %d; W=%d of %d replicas)\n",
		st.Volume, rv.Dir(), st.Term, st.Head, st.W, len(addrs))
	for i, a := range addrs {
		fmt.Fprintf(w, "  replica %d: %s, data in %s\n", i+1, a, dirs[i])
	}
	fmt.Fprintf(w, "  look at it:   ls -la %s\n", rv.Dir())
	if adm != nil {
		fmt.Fprintf(w, "                %s status --admin %s\n", prog, adm.Addr())
		fmt.Fprintf(w, "                curl -s http://%s/metrics | grep ^spoolfs_\n", adm.Addr())
	}
	fmt.Fprintf(w, "                %s status --replicas %s\n", prog, strings.Join(addrs, ","))
	fmt.Fprintf(w, "  stop: Ctrl-C (unmounts cleanly; the replicas keep the volume and the next run recovers it)\n\n")
}
