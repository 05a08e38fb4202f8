package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/process"
	"github.com/spoolfs/spoolfs/node"
)

// mountFlags holds the flags of `spoolfs mount` before they become
// config.MountOptions.
type mountFlags struct {
	opts      config.MountOptions
	o         []string
	capacity  config.ByteSize
	maxWrite  config.ByteSize
	rootMode  string
	rootOwner string
	local     bool
	repl      replicaFlags // --replicas and what goes with it (mount_replicas.go)
	follow    bool
	maxLag    time.Duration // --max-follow-lag
	unshare   bool
	launch    launchFlags
}

func newMountCmd() *cobra.Command { return mountCmd(runMount) }

// mountCmd is `spoolfs mount` running run (tests check the examples of
// --help with a run that only validates).
func mountCmd(run func(*cobra.Command, *mountFlags, []string) error) *cobra.Command {
	f := &mountFlags{opts: config.DefaultMountOptions(), rootMode: "0755"}
	c := &cobra.Command{
		Use:   "mount [flags] VOLUME MOUNTPOINT [-- CMD ARGS...]",
		Short: "Mount a volume and serve it until unmounted or signalled",
		Long: `Mount VOLUME at MOUNTPOINT and serve it until it is unmounted or spoolfs gets
SIGINT/SIGTERM (then it unmounts cleanly; a second signal forces a lazy unmount)
or spoolfs umount MOUNTPOINT. It stays in the foreground: run it with & (or under
systemd, or with -- CMD) to keep the shell.
As root it mounts with mount(2); otherwise through fusermount3 (package fuse3).
The mount shows in /proc/mounts as "spoolfs:VOLUME MOUNTPOINT fuse.spoolfs".

With --replicas, this node becomes the volume's primary: it takes a new term
from a quorum of the replicas and loads the volume's most advanced state
from them before the mount exists; close(), fsync(), rename() and link()
return once --w replicas hold the change (EIO after --flush-timeout). With
--local the volume lives in this process's memory alone.

With --follow (or -o ro) and --replicas, this node is a follower: it loads
the volume from its most advanced replica and shows the primary's changes
as they become durable (deleted names leave the kernel's caches at once;
entries and attributes are cached --entry-timeout/--attr-timeout, 60s by
default on a follower). Every change made on it answers EROFS until
spoolfs promote VOLUME --admin ADDR makes this node the primary, without
an unmount; --w, --log-bytes and --flush-timeout apply from then on.`,
		Example: `  spoolfs mount --replicas a:7400,b:7400,c:7400 mx1-spool /var/spool/exim4
  spoolfs mount --replicas a:7400,b:7400,c:7400 -o allow_other mx1-spool /var/spool/exim4 -- exim -bd -q30m
  spoolfs mount --unshare --replicas a:7400,b:7400,c:7400 mx1-spool /var/spool/exim4 -- exim -bd -q30m
  spoolfs mount --local spool ./mnt &    # serves in the background; stop it with: spoolfs umount ./mnt
  spoolfs mount --local -o allow_other,entry_timeout=10m mx1-spool /var/spool/exim4
  spoolfs mount --follow --replicas a:7400,b:7400,c:7400 --admin 127.0.0.1:7480 mx1-spool /var/spool/exim4`,
		Args: mountArgs,
		RunE: func(c *cobra.Command, args []string) error { return run(c, f, args) },
	}
	fl := c.Flags()
	fl.BoolVar(&f.local, "local", false, "serve the volume from memory alone, with no replicas (nothing survives the process)")
	fl.StringArrayVarP(&f.o, "options", "o", nil, "mount options, comma-separated: allow_other, ro, sync, noexec, entry_timeout=DUR, attr_timeout=DUR")
	fl.DurationVar(&f.opts.EntryTimeout, "entry-timeout", f.opts.EntryTimeout, "how long the kernel caches names (the primary is the only writer; a follower's default is 60s)")
	fl.DurationVar(&f.opts.AttrTimeout, "attr-timeout", f.opts.AttrTimeout, "how long the kernel caches attributes (a follower's default is 60s)")
	fl.Var(&f.capacity, "capacity", "bytes the volume may hold, e.g. 1GiB (0: from the machine's memory)")
	fl.Uint64Var(&f.opts.MaxInodes, "max-inodes", 0, "inodes the volume may hold (0: one per 8 KiB of capacity)")
	fl.DurationVar(&f.opts.FlushTimeout, "flush-timeout", f.opts.FlushTimeout, "how long close/fsync/rename wait for replicas before EIO")
	fl.DurationVar(&f.opts.UnmountTimeout, "unmount-timeout", f.opts.UnmountTimeout, "how long a stop retries a busy unmount before a lazy one")
	fl.BoolVar(&f.opts.AccessLog, "access-log", false, "log one line per FUSE op")
	fl.DurationVar(&f.opts.Watchdog, "watchdog", f.opts.Watchdog, "log the stacks of all goroutines when the actor is stuck in one step this long while the kernel waits")
	fl.StringVar(&f.rootMode, "root-mode", f.rootMode, "permissions of a new volume's root directory (octal)")
	fl.StringVar(&f.rootOwner, "root-owner", "", "UID:GID owning a new volume's root directory (default: the mounting user)")
	addKernelFlags(c, f)
	addReplicaFlags(c, &f.repl)
	fl.BoolVar(&f.follow, "follow", false, "with --replicas: mount read-only as a follower of the volume's primary (spoolfs promote makes it the primary)")
	fl.DurationVar(&f.maxLag, "max-follow-lag", admin.DefaultMaxFollowLag, "with --follow: /readyz answers 503 unless the follower is connected and this close behind its replica")
	fl.BoolVar(&f.unshare, "unshare", false, "enter new user and mount namespaces first (mount as a user without privileges; the mount is seen by spoolfs and CMD only)")
	addLaunchFlags(c, &f.launch)
	return c
}

// addKernelFlags adds the FUSE connection knobs the benchmark tries.
func addKernelFlags(c *cobra.Command, f *mountFlags) {
	k := &f.opts.Kernel
	fl := c.Flags()
	fl.BoolVar(&k.WritebackCache, "writeback-cache", k.WritebackCache, "kernel write-back caching (batches small writes; default: on with --local, off with --replicas, where each mtime the kernel writes back is a record to ship)")
	fl.Var(&k.Readdirplus, "readdirplus", "READDIRPLUS: off, on, or auto (the kernel chooses)")
	fl.BoolVar(&k.AsyncReads, "async-reads", k.AsyncReads, "let the kernel send several READs of one file at once")
	fl.BoolVar(&k.ParallelDirOps, "parallel-dirops", k.ParallelDirOps, "let the kernel send concurrent LOOKUP/READDIR in one directory")
	fl.Var(&f.maxWrite, "max-write", "largest WRITE request in bytes, e.g. 128KiB (0: jacobsa/fuse's default, 1 MiB)")
	fl.BoolVar(&k.DebugFUSE, "debug-fuse", false, "jacobsa/fuse's own debug log of every op (very noisy)")
}

// mountArgs wants VOLUME and MOUNTPOINT before any `--`.
func mountArgs(c *cobra.Command, args []string) error {
	n := len(args)
	if dash := c.ArgsLenAtDash(); dash >= 0 {
		n = dash
	}
	if n != 2 {
		return usageErr(c, fmt.Errorf("want VOLUME and MOUNTPOINT, got %d arguments", n))
	}
	return nil
}

func runMount(c *cobra.Command, f *mountFlags, args []string) error {
	if err := f.finish(c); err != nil {
		return usageErr(c, err)
	}
	f.opts.Volume, f.opts.Dir = args[0], args[1]
	if err := config.ValidateVolumeName(f.opts.Volume); err != nil {
		return usageErr(c, err)
	}
	child, err := childArgv(c, args)
	if err != nil {
		return usageErr(c, err)
	}
	log, err := newLogger()
	if err != nil {
		return usageErr(c, err)
	}
	defer log.Sync() //nolint:errcheck // stderr
	if f.unshare {
		process.SurviveSIGPIPE() // this parent logs too
		return reexecUnshared(log)
	}
	if err := enterUnshared(); err != nil {
		return err
	}
	limit, limitErr := process.RaiseFileLimit()

	sigs := make(chan os.Signal, 2)
	defer process.NotifyStop(sigs, log)()

	if f.opts.Follower {
		return runFollower(f, child, sigs, log)
	}
	if f.repl.replicas != "" {
		return runReplicated(f, child, sigs, log)
	}
	v, err := node.Mount(f.opts, &fsactor.DiscardSink{}, nil, log)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	logFileLimit(log, limit, limitErr)
	return serveVolume(v, child, f.launch, sigs, log, "serving")
}

// serveVolume serves v until it is unmounted or a signal comes, or runs
// CMD (child) in it when there is one; doing names the serving in the log
// line ("serving", "following").
func serveVolume(v *node.Volume, child []string, l launchFlags, sigs chan os.Signal, log *zap.Logger, doing string) error {
	if child != nil {
		return serveChild(v, child, l, sigs, log)
	}
	log.Info(doing+"; stop with Ctrl-C or SIGTERM (unmounts cleanly)", zap.Int("pid", os.Getpid()))
	if code := node.ServeUntilSignal(v, sigs); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// logFileLimit logs the open file limit process.RaiseFileLimit left, and
// why it could not raise it if it could not.
func logFileLimit(log *zap.Logger, limit process.FileLimit, err error) {
	if err != nil {
		log.Warn("could not raise the open file limit", zap.Error(err))
	}
	log.Info("open file limit (one descriptor per memfd arena and per file above 64 KiB)", limit.Fields()...)
}

// finish checks the flags that need more than their type and turns them
// into f.opts.
func (f *mountFlags) finish(c *cobra.Command) error {
	follower := f.repl.replicas != "" && config.IsFollower(f.follow, f.o)
	switch {
	case f.follow && f.local:
		return errors.New("--follow and --local exclude each other: a follower follows a replicated volume (--replicas)")
	case f.follow && f.repl.replicas == "":
		return errors.New("--follow: want --replicas host:port,host:port,host:port, the replicas to follow the volume from")
	case !follower && c.Flags().Changed("max-follow-lag"):
		return errors.New("--max-follow-lag: only with --follow")
	case follower && f.maxLag <= 0:
		return fmt.Errorf("--max-follow-lag %v: want a positive duration, e.g. 5s", f.maxLag)
	case f.local && f.repl.replicas != "":
		return errors.New("--local and --replicas exclude each other")
	case !f.local && f.repl.replicas == "":
		return errors.New("no replicas: pass --replicas host:port,host:port,host:port, or --local to serve the volume from memory alone")
	}
	if f.repl.replicas != "" && !c.Flags().Changed("writeback-cache") {
		f.opts.Replicated()
	}
	if follower {
		f.followerTimeouts(c)
	}
	for _, o := range f.o {
		if err := config.ApplyOptionString(&f.opts, o); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
	}
	if follower {
		f.opts.Follow()
	}
	f.opts.Capacity = uint64(f.capacity)
	if f.maxWrite > 1<<30 {
		return fmt.Errorf("--max-write %d: too large", f.maxWrite)
	}
	f.opts.Kernel.MaxWrite = uint32(f.maxWrite)
	var err error
	if f.opts.RootMode, err = config.ParseRootMode(f.rootMode); err != nil {
		return fmt.Errorf("--root-mode %w", err)
	}
	if f.opts.RootUid, f.opts.RootGid, err = config.ParseOwner(f.rootOwner); err != nil {
		return fmt.Errorf("--root-owner %w", err)
	}
	return f.repl.check(c, f.local)
}

// followerTimeouts gives a follower its cache timeouts unless set.
func (f *mountFlags) followerTimeouts(c *cobra.Command) {
	if !c.Flags().Changed("entry-timeout") {
		f.opts.EntryTimeout = config.FollowerCacheTimeout
	}
	if !c.Flags().Changed("attr-timeout") {
		f.opts.AttrTimeout = config.FollowerCacheTimeout
	}
}
