package fsactor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
)

// overflowGid is the gid given to a new inode when the caller's gid cannot
// be found: the kernel's own overflowgid ("nogroup"), never a privileged
// group.
const overflowGid = 65534

// gidSource finds the fsgid of the process that issued an op. jacobsa's
// OpContext carries the uid and pid but not the gid, which the kernel did
// put in the request's in-header (struct fuse_in_header {len, opcode,
// unique, nodeid, uid, gid, pid, padding}).
//
// Fast path: jacobsa exports the in-header's uid, gid and pid through
// MountedFileSystem.GetFuseContext(ctx), a method that reads only the ctx
// returned by ReadOp (its receiver is unused, so a nil one serves). The
// values are checked against the op's OpContext (uid and pid must match,
// proving the ctx is that op's); if that check fails, or a future jacobsa
// panics on the nil receiver, the slow path reads the fsgid from
// /proc/<pid>/status and the switch is logged once.
//
// Only ops that create inodes call it (opRow.creates).
type gidSource struct {
	log     *zap.Logger
	offOnce sync.Once

	fast, slow, failed atomic.Uint64
}

// gid returns the caller's fsgid for the op whose ReadOp ctx and OpContext
// are given.
func (g *gidSource) gid(ctx context.Context, oc *fuseops.OpContext) uint32 {
	if uid, gid, pid, ok := headerIDs(ctx); ok && uid == oc.Uid && pid == oc.Pid {
		g.fast.Add(1)
		return gid
	}
	g.offOnce.Do(func() {
		g.log.Warn("caller gid: the FUSE in-header is not readable through jacobsa; " +
			"falling back to /proc/<pid>/status (slower, racy if the caller exits)")
	})
	gid, err := procFsGid(oc.Pid)
	if err != nil {
		g.failed.Add(1)
		g.log.Warn("caller gid unknown: using the overflow gid",
			zap.Uint32("pid", oc.Pid), zap.Uint32("gid", overflowGid), zap.Error(err))
		return overflowGid
	}
	g.slow.Add(1)
	return gid
}

// headerIDs reads uid, gid and pid from the in-header behind a ReadOp ctx.
func headerIDs(ctx context.Context) (uid, gid, pid uint32, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	var mfs *fuse.MountedFileSystem // GetFuseContext does not use its receiver
	uid, gid, pid, err := mfs.GetFuseContext(ctx)
	return uid, gid, pid, err == nil
}

// procFsGid reads the filesystem gid (the fourth field of the Gid: line) of
// process pid.
func procFsGid(pid uint32) (uint32, error) {
	if pid == 0 {
		return 0, fmt.Errorf("caller gid: no pid in the request")
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0, fmt.Errorf("caller gid: %w", err)
	}
	return parseFsGid(b)
}

// parseFsGid extracts the fsgid from the text of /proc/<pid>/status
// ("Gid:\treal\teffective\tsaved\tfs").
//
// Kept by hand rather than prometheus/procfs (Proc.NewStatus), measured
// (issue 12; docs/architecture.md, "Libraries"): procfs answers GIDs
// all 0 — root's group — when the Gid line is missing or unreadable, with
// no error, where this must fail closed to the overflow gid; and it parses
// every line of the file (121 allocations a call against 22 here, the
// same time within noise; the command is in docs/architecture.md).
func parseFsGid(status []byte) (uint32, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 5 && string(f[0]) == "Gid:" {
			v, err := strconv.ParseUint(string(f[4]), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("caller gid: bad Gid line %q: %w", sc.Text(), err)
			}
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("caller gid: no Gid line in /proc/<pid>/status")
}
