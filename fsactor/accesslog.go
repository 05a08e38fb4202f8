package fsactor

import (
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Sampling of error lines: per message and level, the first errFirst lines
// of each second are written, then one in errThereafter. A storm (every
// flush failing while replicas are away) cannot flood the log; zap counts
// what it drops.
const (
	errFirst      = 20
	errThereafter = 100
)

// accessLog writes what the loop says about each answered op.
//
// With Config.AccessLog, every op gets one Info line after its reply:
// request id, op, inode, the new inode (ops that create one), name (where
// the op has one), errno, latency (fields).
// Without it nothing is written per op above Debug, except error replies,
// which are always logged (sampled): at Warn, or at Error for EIO (lost
// durability or a broken memfd). Errors that are normal answers are not
// errors here and never go above Debug (normalErrno): ENOENT on lookup,
// ENODATA/ERANGE/EOPNOTSUPP on the xattr ops (ls -l asks for
// system.posix_acl_access, cp -a copies xattrs), ENOSYS, EEXIST and
// ENOTEMPTY. EAGAIN from a refused lock never reaches spoolfs: locks are
// the kernel's own (DESIGN.md).
type accessLog struct {
	on   bool
	all  *zap.Logger // access lines, unsampled: the flag is the control
	errs *zap.Logger // error lines, sampled
}

func newAccessLog(log *zap.Logger, on bool) *accessLog {
	return &accessLog{on: on, all: log, errs: sampled(log)}
}

// sampled wraps log with the error-line sampling above.
func sampled(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, errFirst, errThereafter)
	}))
}

// done logs op after its reply. start is when the actor read it; released
// the inode whose handle it closed (Effects.Released), else 0.
func (a *accessLog) done(k opKind, op any, oc *fuseops.OpContext, start time.Time, released uint64, errno syscall.Errno) {
	lvl, lg, msg := a.line(k, errno)
	if lg == nil {
		return
	}
	ce := lg.Check(lvl, msg)
	if ce == nil {
		return
	}
	ce.Write(a.fields(k, op, oc, start, released, errno)...)
}

// line says at which level, through which logger and with which message
// an op of kind k answered with errno is logged; a nil logger: not at all.
func (a *accessLog) line(k opKind, errno syscall.Errno) (zapcore.Level, *zap.Logger, string) {
	switch {
	case errno == syscall.EIO:
		return zapcore.ErrorLevel, a.errs, "fuse op failed"
	case errno != 0 && !normalErrno(k, errno):
		return zapcore.WarnLevel, a.errs, "fuse op failed"
	case a.on:
		return zapcore.InfoLevel, a.all, "fuse op"
	case errno != 0: // a normal answer: for --log-level debug only, sampled
		return zapcore.DebugLevel, a.errs, "fuse op answered an error"
	}
	return 0, nil, ""
}

// fields are the line's fields: req (the kernel's request id, which the
// op's records carry to the replicas), op, ino (the inode the op is about:
// the parent for ops on a name, the handle's inode for release and
// releasedir), new_ino (the inode a create, mkdir, mknod or symlink made),
// name and to where the op has them, errno, latency.
func (a *accessLog) fields(k opKind, op any, oc *fuseops.OpContext, start time.Time, released uint64, errno syscall.Errno) []zap.Field {
	var id uint64
	if oc != nil {
		id = oc.FuseID
	}
	ino, name, to := opTarget(op)
	if ino == 0 {
		ino = released
	}
	f := make([]zap.Field, 0, 9)
	f = append(f, zap.Uint64("req", id), zap.String("op", k.String()), zap.Uint64("ino", ino))
	if n := createdIno(k, op); n != 0 && errno == 0 {
		f = append(f, zap.Uint64("new_ino", n))
	}
	if name != "" {
		f = append(f, zap.String("name", name))
	}
	if to != "" {
		f = append(f, zap.String("to", to))
	}
	if errno != 0 {
		f = append(f, zap.String("errno", errnoName(errno)))
	} else {
		f = append(f, zap.Int("errno", 0))
	}
	return append(f, zap.Duration("latency", time.Since(start)))
}

// normalErrno says whether errno is an ordinary answer to an op of kind k,
// not worth a line of its own.
func normalErrno(k opKind, e syscall.Errno) bool {
	switch e {
	case syscall.ENOSYS, syscall.EEXIST, syscall.ENOTEMPTY:
		return true
	case syscall.ENOENT:
		return k == kindLookUp
	case syscall.ENODATA, syscall.ERANGE, syscall.EOPNOTSUPP:
		return k == kindGetXattr || k == kindListXattr || k == kindSetXattr || k == kindRemoveXattr
	}
	return false
}
