package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/process"
	"github.com/spoolfs/spoolfs/internal/tlsid"
	"github.com/spoolfs/spoolfs/node"
	"github.com/spoolfs/spoolfs/replication"
)

func init() { extraCommands = append(extraCommands, newReplicaCmd) }

func newReplicaCmd() *cobra.Command {
	var o node.ReplicaOptions
	var maxFile, compactMin config.ByteSize
	watchBuf := config.ByteSize(replication.DefaultWatchBuffer)
	var allowFollow []string
	var grace time.Duration
	var admin string
	var tf tlsFlags
	c := &cobra.Command{
		Use:   "replica --listen ADDR --data DIR",
		Short: "Serve as a replica for the volumes that primaries push to it",
		Long: `Serve the replication service on ADDR and store the volumes primaries push
to it in DIR, one buntdb file per volume, fsynced before each acknowledgement.
A restarted replica resumes from what is on disk. SIGINT/SIGTERM stop it:
calls in flight get --stop-grace to finish, then the streams are closed (a
primary reconnects to the replica when it returns).`,
		Example: `  spoolfs replica --listen 10.0.0.7:7400 --data /var/lib/spoolfs \
      --tls-ca /etc/spoolfs/tls/ca.crt --tls-cert /etc/spoolfs/tls/r1.crt --tls-key /etc/spoolfs/tls/r1.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if o.Listen == "" || o.DataDir == "" {
				return usageErr(c, errors.New("want --listen ADDR and --data DIR"))
			}
			o.MaxFileSize, o.CompactMin = uint64(maxFile), int64(compactMin)
			if compactMin != 0 && compactMin < 1<<20 {
				return usageErr(c, fmt.Errorf("--compact-min-size %d: below the minimum of 1MiB", compactMin))
			}
			cfg := config.Node{Listen: o.Listen, DataDir: o.DataDir, TLS: tf.config()}
			if err := cfg.Validate(); err != nil {
				return usageErr(c, flagNames(err))
			}
			mat, err := cfg.TLS.Files().Material(nil)
			if err != nil {
				return usageErr(c, err)
			}
			o.Creds = mat.ServerCreds()
			o.StopGrace = grace
			o.WatchBuffer = node.WatchBufferOption(uint64(watchBuf))
			if o.FollowAllow, err = config.ParseAllowFollow(allowFollow); err != nil {
				return usageErr(c, err)
			}
			return runReplica(o, cfg.NodeID, admin, mat)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Listen, "listen", "", "host:port to serve the replication service on")
	fl.StringVar(&o.DataDir, "data", "", "directory of the volumes' buntdb files (created if missing)")
	fl.Var(&maxFile, "max-file-size", "largest file a record may carry, e.g. 1GiB (0: the default)")
	fl.Var(&compactMin, "compact-min-size", "a volume's file is rewritten when it has doubled and passed this size (default 64MiB); each rewrite pauses that volume's commits")
	fl.DurationVar(&grace, "stop-grace", 5*time.Second, "on SIGTERM, how long calls in flight have to finish")
	fl.StringVar(&admin, "admin", "", "host:port of the admin HTTP endpoint: /metrics, /healthz, /readyz, /status, /debug/pprof (default: none)")
	fl.Var(&watchBuf, "watch-buffer", "per volume, the bytes of recent records kept in memory to serve followers' watch streams (0: no followers from this replica)")
	fl.StringArrayVar(&allowFollow, "allow-follow", nil, "VOLUME=ID1,ID2: only these nodes (by certificate) and the volume's primary may follow VOLUME from here (repeatable; default: any node the CA authenticates)")
	addTLSFlags(fl, &tf)
	return c
}

func runReplica(o node.ReplicaOptions, id, admin string, mat *tlsid.Material) error {
	log, err := newLogger()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer log.Sync() //nolint:errcheck // stderr
	sigs := make(chan os.Signal, 1)
	defer process.NotifyStop(sigs, log)()
	n := node.NewNode(id, log)
	mat.SetLogger(log) // its reloads
	n.SetTLS(mat)
	// A process that is a replica and nothing else sizes GOMAXPROCS to
	// the volumes it serves (node/procs.go), unless the environment says.
	o.AdaptProcs = true
	if _, err := n.StartReplica(o); err != nil {
		return &exitError{code: 1, err: err}
	}
	if admin != "" {
		a, err := n.StartAdmin(admin)
		if err != nil {
			n.Stop(nil)
			return &exitError{code: 1, err: err}
		}
		log.Info("admin endpoint", zap.String("addr", a.Addr()))
	}
	return exitCode(n.Serve(sigs)) // Serve logged why
}
