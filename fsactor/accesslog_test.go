package fsactor

import (
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestAccessLog(t *testing.T) {
	lookup := &fuseops.LookUpInodeOp{Parent: 1, Name: "m1", OpContext: fuseops.OpContext{FuseID: 7}}
	rename := &fuseops.RenameOp{OldParent: 1, OldName: "a", NewParent: 1, NewName: "b"}
	flush := &fuseops.FlushFileOp{Inode: 9}
	getx := &fuseops.GetXattrOp{Inode: 9, Name: "system.posix_acl_access"}
	setx := &fuseops.SetXattrOp{Inode: 9, Name: "system.posix_acl_access"}
	for _, tc := range []struct {
		name  string
		on    bool
		kind  opKind
		op    any
		errno syscall.Errno
		level zapcore.Level // zapcore.InvalidLevel: nothing logged
	}{
		{"off: success", false, kindLookUp, lookup, 0, zapcore.InvalidLevel},
		{"off: lookup ENOENT is normal", false, kindLookUp, lookup, syscall.ENOENT, zapcore.DebugLevel},
		{"off: EEXIST is normal", false, kindCreate, lookup, syscall.EEXIST, zapcore.DebugLevel},
		{"off: ENOSYS is normal", false, kindUnknown, struct{}{}, syscall.ENOSYS, zapcore.DebugLevel},
		{"off: getxattr of an ACL, EOPNOTSUPP, is normal", false, kindGetXattr, getx, syscall.EOPNOTSUPP, zapcore.DebugLevel},
		{"off: getxattr ENODATA is normal", false, kindGetXattr, getx, syscall.ENODATA, zapcore.DebugLevel},
		{"off: listxattr EOPNOTSUPP is normal", false, kindListXattr, &fuseops.ListXattrOp{Inode: 9}, syscall.EOPNOTSUPP, zapcore.DebugLevel},
		{"off: setxattr of an ACL, EOPNOTSUPP, is normal", false, kindSetXattr, setx, syscall.EOPNOTSUPP, zapcore.DebugLevel},
		{"off: removexattr ENODATA is normal", false, kindRemoveXattr, &fuseops.RemoveXattrOp{Inode: 9, Name: "user.a"}, syscall.ENODATA, zapcore.DebugLevel},
		{"off: setxattr E2BIG is an error", false, kindSetXattr, setx, syscall.E2BIG, zapcore.WarnLevel},
		{"off: unlink ENOENT is an error", false, kindUnlink, lookup, syscall.ENOENT, zapcore.WarnLevel},
		{"off: EIO at Error", false, kindFlush, flush, syscall.EIO, zapcore.ErrorLevel},
		{"on: success", true, kindRename, rename, 0, zapcore.InfoLevel},
		{"on: normal errno", true, kindLookUp, lookup, syscall.ENOENT, zapcore.InfoLevel},
		{"on: EIO", true, kindFlush, flush, syscall.EIO, zapcore.ErrorLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			a := newAccessLog(zap.New(core), tc.on)
			_, oc := classify(tc.op)
			a.done(tc.kind, tc.op, oc, time.Now(), 0, tc.errno)
			entries := logs.All()
			if tc.level == zapcore.InvalidLevel {
				if len(entries) != 0 {
					t.Fatalf("logged %v, want nothing", entries)
				}
				return
			}
			if len(entries) != 1 || entries[0].Level != tc.level {
				t.Fatalf("logged %v, want one line at %s", entries, tc.level)
			}
			f := entries[0].ContextMap()
			for _, key := range []string{"req", "op", "ino", "errno", "latency"} {
				if _, ok := f[key]; !ok {
					t.Errorf("field %q missing: %v", key, f)
				}
			}
			if tc.op == lookup && (f["name"] != "m1" || f["req"] != uint64(7)) {
				t.Errorf("lookup line %v: want name m1, req 7", f)
			}
			if tc.op == rename && (f["name"] != "a" || f["to"] != "b") {
				t.Errorf("rename line %v: want name a, to b", f)
			}
		})
	}
}

// TestAccessLogSampled: a storm of error replies is sampled.
func TestAccessLogSampled(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	a := newAccessLog(zap.New(core), false)
	op := &fuseops.FlushFileOp{Inode: 9}
	for range 1000 {
		a.done(kindFlush, op, &op.OpContext, time.Now(), 0, syscall.EIO)
	}
	if n := logs.Len(); n < errFirst || n > errFirst+1000/errThereafter {
		t.Fatalf("%d lines for 1000 EIO replies, want about %d", n, errFirst+(1000-errFirst)/errThereafter)
	}
}

// TestAccessLogNamesCreatedAndReleased: a line of an op that made an inode
// names it (new_ino) as well as the parent (ino); a failed create names no
// new inode; a release line names the inode of the handle it closed.
func TestAccessLogNamesCreatedAndReleased(t *testing.T) {
	entry := fuseops.ChildInodeEntry{Child: 42}
	for _, tc := range []struct {
		name     string
		kind     opKind
		op       any
		released uint64
		errno    syscall.Errno
		ino      uint64
		newIno   any // nil: no new_ino field
	}{
		{"create", kindCreate, &fuseops.CreateFileOp{Parent: 5, Name: "m", Entry: entry}, 0, 0, 5, uint64(42)},
		{"mkdir", kindMkDir, &fuseops.MkDirOp{Parent: 5, Name: "d", Entry: entry}, 0, 0, 5, uint64(42)},
		{"mknod", kindMkNode, &fuseops.MkNodeOp{Parent: 5, Name: "p", Entry: entry}, 0, 0, 5, uint64(42)},
		{"symlink", kindSymlink, &fuseops.CreateSymlinkOp{Parent: 5, Name: "l", Entry: entry}, 0, 0, 5, uint64(42)},
		{"failed create", kindCreate, &fuseops.CreateFileOp{Parent: 5, Name: "m", Entry: entry}, 0, syscall.ENOSPC, 5, nil},
		{"link makes no inode", kindLink, &fuseops.CreateLinkOp{Parent: 5, Name: "h", Target: 42, Entry: entry}, 0, 0, 5, nil},
		{"release", kindRelease, &fuseops.ReleaseFileHandleOp{Handle: 3}, 42, 0, 42, nil},
		{"releasedir", kindReleaseDir, &fuseops.ReleaseDirHandleOp{Handle: 3}, 42, 0, 42, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			a := newAccessLog(zap.New(core), true)
			_, oc := classify(tc.op)
			a.done(tc.kind, tc.op, oc, time.Now(), tc.released, tc.errno)
			if logs.Len() != 1 {
				t.Fatalf("logged %v, want one line", logs.All())
			}
			f := logs.All()[0].ContextMap()
			if f["ino"] != tc.ino || f["new_ino"] != tc.newIno {
				t.Errorf("line %v: want ino %d, new_ino %v", f, tc.ino, tc.newIno)
			}
		})
	}
}
