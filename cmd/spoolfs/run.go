package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/process"
	"github.com/spoolfs/spoolfs/node"
	"github.com/spoolfs/spoolfs/replication"
)

func init() { extraCommands = append(extraCommands, newRunCmd) }

// defaultAdmin is the admin endpoint of `spoolfs run --embedded` and where
// `spoolfs status` looks by default.
const defaultAdmin = "127.0.0.1:7480"

// runFlags are the flags of `spoolfs run`.
type runFlags struct {
	config   string
	embedded bool
	cfg      config.Node // from flags (the simple case)
	vol      config.Volume
	replicas string
	mount    string
	tls      tlsFlags
}

func newRunCmd() *cobra.Command {
	f := &runFlags{}
	c := &cobra.Command{
		Use:   "run (-c node.yaml | --embedded --mount DIR | flags)",
		Short: "Run a node: replica server, replicated mounts, admin endpoint",
		Long: `Run everything a node does, from a config file (-c, see
docs/configuration.md) or from flags: a replica server (--listen, --data),
volumes this node is the primary of (--volume, --mount, --replicas), and the
admin endpoint (--admin: /metrics, /healthz, /readyz, /status,
/debug/pprof). Serves until SIGINT/SIGTERM, then unmounts cleanly, waits
until the replicas hold every record, and stops.

--embedded runs a whole replicated system in this one process (make run):
three replicas on free 127.0.0.1 ports, each with its own directory under
--data, and this node as the primary of --volume mounted at --mount. The
data persists: the next run recovers the volume from the replicas.`,
		Example: `  spoolfs run -c /etc/spoolfs/node.yaml
  spoolfs run --embedded --mount ./mnt --volume spool --data ./data
  spoolfs run --listen 10.0.0.7:7400 --data /var/lib/spoolfs --admin 127.0.0.1:7480
  spoolfs run --volume mx1-spool --mount /var/spool/exim4 --replicas a:7400,b:7400,c:7400`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runNode(c, f) },
	}
	fl := c.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "node configuration file (YAML); excludes the node and volume flags")
	fl.BoolVar(&f.embedded, "embedded", false, "run 3 replicas and the primary of --volume in this process (make run)")
	fl.StringVar(&f.cfg.NodeID, "node-id", "", "this node's id, recorded by replicas with its term (default: the host name)")
	fl.StringVar(&f.cfg.Listen, "listen", "", "serve as a replica on host:port")
	fl.StringVar(&f.cfg.DataDir, "data", "", "replica data directory (with --embedded: the replicas' parent directory, default ./data)")
	fl.StringVar(&f.cfg.Admin, "admin", "", "admin HTTP endpoint host:port (with --embedded default "+defaultAdmin+", or a free port if taken)")
	fl.StringVar(&f.vol.Name, "volume", "", "volume to mount as its primary (with --embedded default spool)")
	fl.StringVar(&f.mount, "mount", "", "where to mount --volume")
	fl.StringVar(&f.replicas, "replicas", "", "the volume's replicas, host:port,host:port,host:port")
	fl.IntVar(&f.vol.W, "w", 0, "write quorum: replicas that must hold a record before close/fsync/rename return (default: a majority, 2 of 3)")
	fl.DurationVar(&f.vol.FlushTimeout, "flush-timeout", 0, "how long close/fsync/rename wait for W replicas before EIO (default 30s)")
	fl.DurationVar(&f.vol.AcquireTimeout, "acquire-timeout", 0, "how long taking the volume and recovering it may take (default 30s)")
	fl.Var(&f.vol.LogBytes, "log-bytes", "bound of the in-memory log for lagging replicas, e.g. 64MiB, the default (beyond: a full snapshot)")
	fl.StringArrayVarP((*[]string)(&f.vol.Options), "options", "o", nil, "mount options, as for spoolfs mount (allow_other, sync, ...)")
	fl.StringVar(&f.vol.RootMode, "root-mode", "", "permissions of a new volume's root directory (octal, default 0755)")
	fl.BoolVar(&f.vol.AccessLog, "access-log", false, "log one line per FUSE op")
	fl.DurationVar(&f.vol.Watchdog, "watchdog", 0, "log the stacks of all goroutines when the actor is stuck in one step this long while the kernel waits (default 5s)")
	fl.StringVar(&f.vol.RootOwner, "root-owner", "", "UID:GID owning a new volume's root directory (default: this user)")
	addTLSFlags(fl, &f.tls)
	return c
}

func runNode(c *cobra.Command, f *runFlags) error {
	cfg, err := f.nodeConfig(c)
	if err != nil {
		return usageErr(c, err)
	}
	log, err := newLogger()
	if err != nil {
		return usageErr(c, err)
	}
	defer log.Sync() //nolint:errcheck // stderr
	limit, limitErr := process.RaiseFileLimit()
	logFileLimit(log, limit, limitErr)

	sigs := make(chan os.Signal, 2)
	defer process.NotifyStop(sigs, log)()
	n := node.NewNode(cfg.NodeID, log)
	ctx, release := node.SignalContext(sigs, log)
	if f.embedded {
		err = n.StartEmbedded(ctx, f.embeddedOptions(cfg, c.OutOrStdout()))
	} else {
		err = n.StartConfig(ctx, cfg)
	}
	sig, signalled := release()
	if err != nil {
		setting := "--acquire-timeout"
		if f.config != "" {
			setting = "acquire_timeout in " + f.config
		}
		return startFailed(err, sig, signalled, setting)
	}
	switch {
	case signalled:
		log.Info("stopping", zap.Stringer("signal", sig))
		return exitCode(n.Stop(sigs))
	}
	log.Info("serving; stop with Ctrl-C or SIGTERM (unmounts cleanly)", zap.Int("pid", os.Getpid()))
	return exitCode(n.Serve(sigs))
}

// startFailed is the error of a start that failed, perhaps because a
// signal cut it short. acquireSetting names where the acquire timeout is
// set (a flag, or a config file's field), for the error of a recovery
// that ran out of it.
func startFailed(err error, sig os.Signal, signalled bool, acquireSetting string) error {
	if signalled {
		err = fmt.Errorf("stopped by %v while starting: %w", sig, err)
	} else if errors.Is(err, replication.ErrAcquireTimeout) {
		err = fmt.Errorf("%w; if the replicas are running and answer, raise %s (recovering a large volume takes longer)", err, acquireSetting)
	}
	return &exitError{code: 1, err: err}
}

func exitCode(code int) error {
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// nodeConfig builds the node's configuration from -c or from the flags.
func (f *runFlags) nodeConfig(c *cobra.Command) (*config.Node, error) {
	nodeFlags := append([]string{"node-id", "listen", "data", "admin", "volume", "mount", "replicas", "w", "flush-timeout",
		"acquire-timeout", "log-bytes", "options", "root-mode", "root-owner", "access-log", "watchdog"}, tlsFlagNames...)
	switch {
	case f.config != "" && f.embedded:
		return nil, errors.New("-c and --embedded exclude each other")
	case f.config != "":
		for _, name := range nodeFlags {
			if c.Flags().Changed(name) {
				return nil, fmt.Errorf("--%s: with -c, set it in the config file", name)
			}
		}
		return config.Load(f.config)
	case f.embedded:
		return f.embeddedConfig(c)
	}
	cfg := f.cfg
	cfg.TLS = f.tls.config()
	if f.vol.Name != "" || f.mount != "" || f.replicas != "" {
		v := f.vol
		v.Replicas = config.SplitReplicas(f.replicas)
		if f.mount != "" {
			abs, err := filepath.Abs(f.mount)
			if err != nil {
				return nil, fmt.Errorf("--mount: %w", err)
			}
			v.MountPoint = abs
		}
		cfg.Volumes = []config.Volume{v}
	}
	if err := cfg.Validate(); err != nil {
		return nil, flagNames(err)
	}
	return &cfg, nil
}

// embeddedConfig checks the flags of --embedded; the volume goes through
// the same validation as a config file's.
func (f *runFlags) embeddedConfig(c *cobra.Command) (*config.Node, error) {
	for _, name := range append([]string{"listen", "replicas"}, tlsFlagNames...) {
		if c.Flags().Changed(name) {
			return nil, fmt.Errorf("--%s: not with --embedded (it starts its own replicas, on loopback)", name)
		}
	}
	if f.mount == "" {
		return nil, errors.New("--embedded: want --mount DIR")
	}
	if config.IsFollower(false, f.vol.Options) {
		return nil, errors.New("-o ro: not with --embedded (its volume is the primary of its own replicas; a read-only mount of a replicated volume is a follower: spoolfs mount --follow)")
	}
	if f.vol.Name == "" {
		f.vol.Name = "spool"
	}
	if f.cfg.DataDir == "" {
		f.cfg.DataDir = "data"
	}
	abs, err := filepath.Abs(f.mount)
	if err != nil {
		return nil, fmt.Errorf("--mount: %w", err)
	}
	v := f.vol
	v.MountPoint, v.Replicas = abs, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} // checked like 3 replicas
	cfg := config.Node{NodeID: f.cfg.NodeID, Volumes: []config.Volume{v}}
	if err := cfg.Validate(); err != nil {
		return nil, flagNames(err)
	}
	// Made only when missing: a stale mount left by a killed server answers
	// ENOTCONN, which MkdirAll would fail on; the mount replaces it.
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("--mount: %w", err)
		}
	}
	cfg.DataDir, cfg.Admin = f.cfg.DataDir, f.cfg.Admin
	return &cfg, nil
}

// embeddedOptions turns the checked flags into the embedded cluster.
func (f *runFlags) embeddedOptions(cfg *config.Node, out interface{ Write([]byte) (int, error) }) node.EmbeddedOptions {
	v := &cfg.Volumes[0]
	o, _ := v.MountOptions("volume") // checked by Validate
	admin, fallback := cfg.Admin, false
	if admin == "" {
		admin, fallback = defaultAdmin, true
	}
	return node.EmbeddedOptions{DataDir: cfg.DataDir, Mount: o, W: v.W, Admin: admin, AdminFallback: fallback,
		LogBytes: int64(v.LogBytes), AcquireTimeout: v.AcquireTimeout, Out: out, Command: os.Args[0]}
}

// flagNames rewords a config validation error for the flags: the
// volumes[0].w of a file is --w on the command line.
func flagNames(err error) error {
	return errors.New(config.FlagNames(err.Error()))
}
