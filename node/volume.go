package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/jacobsa/fuse"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/metrics"
	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// Volume is one mounted volume being served by this process.
type Volume struct {
	opts   config.MountOptions
	dir    string // absolute, symlinks resolved
	log    *zap.Logger
	method mountdev.Method
	dev    *os.File // the /dev/fuse connection; fsactor's NotifyDev
	server *fsactor.Server
	mfs    *fuse.MountedFileSystem

	done    chan struct{} // closed once ServeOps returned and dev is closed
	joinErr error         // valid after done
	// beforeUnmount runs before Unmount asks the kernel (set once, before
	// the volume is shared): a follower stops applying records first.
	beforeUnmount func()
}

// Mount mounts volume o.Volume at o.Dir and serves it from a new actor
// built from sink and snap (nil snap: a new, empty volume). It checks the
// mount point first (mountdev.PrepareMountPoint), mounts with mount(2) or
// fusermount3, and returns once the kernel's INIT was answered. The volume
// is served until it is unmounted (Unmount, or by anyone).
func Mount(o config.MountOptions, sink fsactor.Sink, snap *fsactor.Snapshot, log *zap.Logger) (*Volume, error) {
	if err := config.ValidateVolumeName(o.Volume); err != nil {
		return nil, err
	}
	dir, err := mountdev.PrepareMountPoint(o.Dir, log)
	if err != nil {
		return nil, err
	}
	dev, method, err := mountdev.Mount(dir, deviceParams(&o))
	if err != nil {
		return nil, err
	}
	v := &Volume{opts: o, dir: dir, log: log, method: method, dev: dev, done: make(chan struct{})}
	if err := v.serve(sink, snap); err != nil {
		if v.server != nil {
			// ServeOps never ran: Close frees the notify workers, the
			// memfds and the eventfd (before dev, which the pool writes).
			v.server.Close()
		}
		dev.Close()
		if _, derr := mountdev.Detach(dir); derr != nil && !errors.Is(derr, mountdev.ErrNotMounted) {
			log.Error("could not undo the mount after a failed start", zap.String("dir", dir), zap.Error(derr))
		}
		return nil, err
	}
	log.Info("mounted", zap.String("volume", o.Volume), zap.String("dir", dir),
		zap.String("via", string(method)), zap.Bool("ro", o.ReadOnly), zap.Bool("follower", o.Follower), zap.Bool("allow_other", o.AllowOther))
	return v, nil
}

// releaseRestored gives the kernel back the memory of the snapshot a
// volume was just restored from, in the background (the mount serves
// already). The snapshot (1 GiB of contents for 1,000,000 files of 1 KiB,
// now copied into memfds) is garbage once its caller drops it, but the
// heap it grew would otherwise stay resident until the next collection,
// which the much smaller live heap may not reach for hours: one forced
// collection and scavenge, once per mount.
func releaseRestored() { go debug.FreeOSMemory() }

// deviceParams is what mounting the device takes from o.
func deviceParams(o *config.MountOptions) mountdev.Params {
	return mountdev.Params{Volume: o.Volume, ReadOnly: o.ReadOnly, NoExec: o.NoExec, AllowOther: o.AllowOther}
}

// fuseMount is fuse.Mount; tests replace it to make a mount fail after
// fsactor.NewServer.
var fuseMount = fuse.Mount

// serve builds the actor and hands jacobsa/fuse a duplicate of the device
// as /dev/fd/N (jacobsa closes its copy when ServeOps returns; v.dev stays
// ours for notifications).
func (v *Volume) serve(sink fsactor.Sink, snap *fsactor.Snapshot) error {
	srv, err := v.newServer(sink, snap)
	if err != nil {
		return err
	}
	dup, err := unix.FcntlInt(v.dev.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dup of /dev/fuse: %w", err)
	}
	mfs, err := fuseMount(fmt.Sprintf("/dev/fd/%d", dup), srv, v.mountConfig())
	if err != nil {
		unix.Close(dup)
		return fmt.Errorf("starting the FUSE connection on %s: %w", v.dir, err)
	}
	v.mfs = mfs
	go v.join()
	return nil
}

// newServer builds the actor serving the volume.
func (v *Volume) newServer(sink fsactor.Sink, snap *fsactor.Snapshot) (fuse.Server, error) {
	o := &v.opts
	srv, err := fsactor.NewServer(fsactor.Config{
		Volume:                o.Volume,
		EntryTimeout:          o.EntryTimeout,
		AttrTimeout:           o.AttrTimeout,
		ReadOnly:              o.ReadOnly,
		Follower:              o.Follower,
		DisableWritebackCache: !o.Kernel.WritebackCache,
		Sync:                  o.Sync,
		RootUid:               o.RootUid,
		RootGid:               o.RootGid,
		RootMode:              o.RootMode,
		Capacity:              o.Capacity,
		MaxInodes:             o.MaxInodes,
		FlushTimeout:          o.FlushTimeout,
		NotifyDev:             v.dev,
		Log:                   v.log.Named("fsactor"),
		AccessLog:             o.AccessLog,
		Watchdog:              o.Watchdog,
		Observer:              metrics.Default.Actor(o.Volume, fsactor.OpNames(), fsactor.WaitOutcomes(), fsactor.LimitNames()),
	}, sink, snap)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", o.Volume, err)
	}
	v.server = srv
	return srv, nil
}

// mountConfig is what jacobsa/fuse negotiates at INIT. Mount options
// proper (fsname, allow_other, ro...) were given to mount(2) already.
func (v *Volume) mountConfig() *fuse.MountConfig {
	k := v.opts.Kernel
	cfg := &fuse.MountConfig{
		FSName:                  mountdev.FSName(v.opts.Volume),
		Subtype:                 "spoolfs",
		ReadOnly:                v.opts.ReadOnly,
		DisableWritebackCaching: !k.WritebackCache,
		EnableAsyncReads:        k.AsyncReads,
		EnableParallelDirOps:    k.ParallelDirOps,
		EnableReaddirplus:       k.Readdirplus != config.ReaddirplusOff,
		EnableAutoReaddirplus:   k.Readdirplus == config.ReaddirplusAuto,
		MaxWrite:                k.MaxWrite,
	}
	// No ErrorLogger by default: jacobsa would log every error reply
	// (EEXIST, ENOTEMPTY...) unsampled on the hot path; fsactor logs the
	// errors that matter, sampled, and the failures of Reply.
	if k.DebugFUSE {
		cfg.ErrorLogger = zap.NewStdLog(v.log.Named("fuse"))
		cfg.DebugLogger = zap.NewStdLog(v.log.Named("fuse.debug"))
	}
	return cfg
}

// join waits for ServeOps to return (the kernel closed the connection),
// then closes the device.
func (v *Volume) join() {
	v.joinErr = v.mfs.Join(context.Background())
	v.dev.Close()
	close(v.done)
}

// Dir is the absolute mount point.
func (v *Volume) Dir() string { return v.dir }

// Server is the actor serving the volume.
func (v *Volume) Server() *fsactor.Server { return v.server }

// Done is closed once the volume is unmounted and every op was answered.
func (v *Volume) Done() <-chan struct{} { return v.done }

// Err is what serving ended with; call after Done.
func (v *Volume) Err() error { return v.joinErr }

// OpCounts returns the number of FUSE requests served per op kind.
func (v *Volume) OpCounts() map[string]uint64 { return v.server.OpCounts() }

// Unmount unmounts the volume, retrying while it is busy until ctx ends
// (then detaching it lazily: lazy reports that), and returns; serving
// ends when Done is closed (at once, or after a lazy unmount when the last
// user lets go).
func (v *Volume) Unmount(ctx context.Context) (lazy bool, err error) {
	if v.beforeUnmount != nil {
		v.beforeUnmount()
	}
	return mountdev.Unmount(ctx, v.dir, v.method)
}

// Detach lazily unmounts the volume at once.
func (v *Volume) Detach() error {
	_, err := mountdev.Detach(v.dir)
	if errors.Is(err, mountdev.ErrNotMounted) {
		return nil
	}
	return err
}
