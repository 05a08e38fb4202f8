package fsactor

import (
	"reflect"
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// opRow is everything fsactor knows about one kind of FUSE op, in one
// place: the loop classifies, counts, looks up the gid, logs and, after a
// failed wait, invalidates from it; State.Handle dispatches through it. A
// new op is one new opKind constant (stats.go) and one row of opTable.
type opRow struct {
	// name is the kernel's request name, lower case: the key of OpCounts
	// and ErrnoCounts and the "op" field of the access log.
	name string
	// typ is the op's type (a *fuseops.XxxOp); nil for kindUnknown.
	typ reflect.Type
	// ctx returns the op's OpContext, nil when it has none (statfs).
	ctx func(op any) *fuseops.OpContext
	// creates says the op makes a new inode: the loop then looks up the
	// caller's gid (gid.go), which no other op needs.
	creates bool
	// handle runs the op on the state (State.Handle): the LSN to wait for
	// before replying, and the errno to reply with.
	handle func(st *State, op any, c Caller, now time.Time) (uint64, syscall.Errno)
	// target returns the access log's fields: the inode the op is about
	// (the parent directory for ops on a name), the name, and for rename
	// the new name. Zero for ops on a handle only.
	target func(op any) (ino uint64, name, to string)
	// failedWait returns what the kernel must forget after the op was
	// applied but its wait for durability failed (failedWaitNotes); nil
	// for ops whose failure leaves the kernel's caches right.
	failedWait func(op any) []Note
	// created returns the inode the op made (its reply's entry), for the
	// access log; nil for ops that make none.
	created func(op any) uint64
}

// opSpec is a row written against its own op type T; row turns it into an
// opRow, whose funcs take the op as an any.
type opSpec[T any] struct {
	name    string
	ctx     func(o *T) *fuseops.OpContext
	creates bool
	handle  func(st *State, o *T, c Caller, now time.Time) (uint64, syscall.Errno)
	target  func(o *T) (ino uint64, name, to string)
	// nameChanged: a failed wait invalidates the one name target returns
	// (the ops that add or remove one name).
	nameChanged bool
	failedWait  func(o *T) []Note // other invalidations; nil: none
	// entry returns the reply's entry of an op that creates an inode
	// (creates): the access log names the new inode from it.
	entry func(o *T) *fuseops.ChildInodeEntry
}

// row builds the opRow of s. Every func asserts the op's type with ok: an
// op of another type (a caller's mistake) answers ENOSYS and logs no
// target, where a bare assertion would panic the actor.
func row[T any](s opSpec[T]) opRow {
	r := opRow{
		name:    s.name,
		typ:     reflect.TypeFor[*T](),
		creates: s.creates,
		ctx: func(op any) *fuseops.OpContext {
			if o, ok := op.(*T); ok {
				return s.ctx(o)
			}
			return nil
		},
		handle: func(st *State, op any, c Caller, now time.Time) (uint64, syscall.Errno) {
			if o, ok := op.(*T); ok {
				return s.handle(st, o, c, now)
			}
			return 0, syscall.ENOSYS
		},
		target: func(op any) (uint64, string, string) {
			if o, ok := op.(*T); ok && s.target != nil {
				return s.target(o)
			}
			return 0, "", ""
		},
	}
	if s.entry != nil {
		r.created = func(op any) uint64 {
			if o, ok := op.(*T); ok {
				return uint64(s.entry(o).Child)
			}
			return 0
		}
	}
	switch {
	case s.nameChanged:
		r.failedWait = func(op any) []Note {
			parent, name, _ := r.target(op)
			return []Note{invalEntry(fuseops.InodeID(parent), name)}
		}
	case s.failedWait != nil:
		r.failedWait = func(op any) []Note {
			if o, ok := op.(*T); ok {
				return s.failedWait(o)
			}
			return nil
		}
	}
	return r
}

// only adapts a handler that never waits (it returns an errno alone).
func only(e syscall.Errno) (uint64, syscall.Errno) { return 0, e }

// onInode is the target of an op about one inode, without a name.
func onInode(ino fuseops.InodeID) (uint64, string, string) { return uint64(ino), "", "" }

// onName is the target of an op about a name in a directory (or an
// extended attribute's name on an inode).
func onName(ino fuseops.InodeID, name string) (uint64, string, string) {
	return uint64(ino), name, ""
}

// invalEntry drops parent/name from the kernel's dentry cache.
func invalEntry(parent fuseops.InodeID, name string) Note {
	return Note{Kind: NoteInvalEntry, Parent: uint64(parent), Name: name}
}

// opTable has one row per op kind: the whole of what differs between
// kinds, outside the handlers themselves.
var opTable = [numKinds]opRow{
	kindUnknown: {
		name:   "unknown",
		ctx:    func(any) *fuseops.OpContext { return nil },
		handle: func(*State, any, Caller, time.Time) (uint64, syscall.Errno) { return 0, syscall.ENOSYS },
		target: func(any) (uint64, string, string) { return 0, "", "" },
	},
	kindLookUp: row(opSpec[fuseops.LookUpInodeOp]{
		name: "lookup",
		ctx:  func(o *fuseops.LookUpInodeOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.LookUpInodeOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return only(st.lookUp(o, now))
		},
		target: func(o *fuseops.LookUpInodeOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
	}),
	kindGetAttr: row(opSpec[fuseops.GetInodeAttributesOp]{
		name: "getattr",
		ctx:  func(o *fuseops.GetInodeAttributesOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.GetInodeAttributesOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return only(st.getAttr(o, now))
		},
		target: func(o *fuseops.GetInodeAttributesOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindSetAttr: row(opSpec[fuseops.SetInodeAttributesOp]{
		name: "setattr",
		ctx:  func(o *fuseops.SetInodeAttributesOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.SetInodeAttributesOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.setAttr(o, now)
		},
		target: func(o *fuseops.SetInodeAttributesOp) (uint64, string, string) { return onInode(o.Inode) },
		failedWait: func(o *fuseops.SetInodeAttributesOp) []Note {
			return []Note{{Kind: NoteInvalInode, Child: uint64(o.Inode), Len: -1}}
		},
	}),
	kindForget: row(opSpec[fuseops.ForgetInodeOp]{
		name: "forget",
		ctx:  func(o *fuseops.ForgetInodeOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ForgetInodeOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.forget(uint64(o.Inode), o.N))
		},
		target: func(o *fuseops.ForgetInodeOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindBatchForget: row(opSpec[fuseops.BatchForgetOp]{
		name: "batch_forget",
		ctx:  func(o *fuseops.BatchForgetOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.BatchForgetOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.batchForget(o))
		},
	}),
	kindMkDir: row(opSpec[fuseops.MkDirOp]{
		name: "mkdir", creates: true, nameChanged: true,
		ctx:    func(o *fuseops.MkDirOp) *fuseops.OpContext { return &o.OpContext },
		handle: (*State).mkDir,
		target: func(o *fuseops.MkDirOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
		entry:  func(o *fuseops.MkDirOp) *fuseops.ChildInodeEntry { return &o.Entry },
	}),
	kindMkNode: row(opSpec[fuseops.MkNodeOp]{
		name: "mknod", creates: true, nameChanged: true,
		ctx:    func(o *fuseops.MkNodeOp) *fuseops.OpContext { return &o.OpContext },
		handle: (*State).mkNode,
		target: func(o *fuseops.MkNodeOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
		entry:  func(o *fuseops.MkNodeOp) *fuseops.ChildInodeEntry { return &o.Entry },
	}),
	kindCreate: row(opSpec[fuseops.CreateFileOp]{
		name: "create", creates: true, nameChanged: true,
		ctx:    func(o *fuseops.CreateFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: (*State).createFile,
		target: func(o *fuseops.CreateFileOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
		entry:  func(o *fuseops.CreateFileOp) *fuseops.ChildInodeEntry { return &o.Entry },
	}),
	kindSymlink: row(opSpec[fuseops.CreateSymlinkOp]{
		name: "symlink", creates: true, nameChanged: true,
		ctx:    func(o *fuseops.CreateSymlinkOp) *fuseops.OpContext { return &o.OpContext },
		handle: (*State).createSymlink,
		target: func(o *fuseops.CreateSymlinkOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
		entry:  func(o *fuseops.CreateSymlinkOp) *fuseops.ChildInodeEntry { return &o.Entry },
	}),
	kindLink: row(opSpec[fuseops.CreateLinkOp]{
		name: "link",
		ctx:  func(o *fuseops.CreateLinkOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.CreateLinkOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.createLink(o, now)
		},
		target: func(o *fuseops.CreateLinkOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
		failedWait: func(o *fuseops.CreateLinkOp) []Note {
			return []Note{invalEntry(o.Parent, o.Name),
				{Kind: NoteInvalInode, Child: uint64(o.Target), Off: -1}} // nlink: attributes only
		},
	}),
	kindRename: row(opSpec[fuseops.RenameOp]{
		name: "rename",
		ctx:  func(o *fuseops.RenameOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.RenameOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.rename(o, now)
		},
		target: func(o *fuseops.RenameOp) (uint64, string, string) {
			return uint64(o.OldParent), o.OldName, o.NewName
		},
		failedWait: func(o *fuseops.RenameOp) []Note {
			return []Note{invalEntry(o.OldParent, o.OldName), invalEntry(o.NewParent, o.NewName)}
		},
	}),
	kindRmDir: row(opSpec[fuseops.RmDirOp]{
		name: "rmdir", nameChanged: true,
		ctx: func(o *fuseops.RmDirOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.RmDirOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.rmDir(o, now)
		},
		target: func(o *fuseops.RmDirOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
	}),
	kindUnlink: row(opSpec[fuseops.UnlinkOp]{
		name: "unlink", nameChanged: true,
		ctx: func(o *fuseops.UnlinkOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.UnlinkOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.unlink(o, now)
		},
		target: func(o *fuseops.UnlinkOp) (uint64, string, string) { return onName(o.Parent, o.Name) },
	}),
	kindOpenDir: row(opSpec[fuseops.OpenDirOp]{
		name: "opendir",
		ctx:  func(o *fuseops.OpenDirOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.OpenDirOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.openDir(o))
		},
		target: func(o *fuseops.OpenDirOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindReadDir: row(opSpec[fuseops.ReadDirOp]{
		name: "readdir",
		ctx:  func(o *fuseops.ReadDirOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReadDirOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return only(st.readDir(o, false, now))
		},
		target: func(o *fuseops.ReadDirOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindReadDirPlus: row(opSpec[fuseops.ReadDirPlusOp]{
		name: "readdirplus",
		ctx:  func(o *fuseops.ReadDirPlusOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReadDirPlusOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return only(st.readDir(&o.ReadDirOp, true, now))
		},
		target: func(o *fuseops.ReadDirPlusOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindReleaseDir: row(opSpec[fuseops.ReleaseDirHandleOp]{
		name: "releasedir",
		ctx:  func(o *fuseops.ReleaseDirHandleOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReleaseDirHandleOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.releaseHandle(uint64(o.Handle)))
		},
	}),
	kindOpen: row(opSpec[fuseops.OpenFileOp]{
		name: "open",
		ctx:  func(o *fuseops.OpenFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.OpenFileOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.openFile(o, now)
		},
		target: func(o *fuseops.OpenFileOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindRead: row(opSpec[fuseops.ReadFileOp]{
		name: "read",
		ctx:  func(o *fuseops.ReadFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReadFileOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.readFile(o))
		},
		target: func(o *fuseops.ReadFileOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindWrite: row(opSpec[fuseops.WriteFileOp]{
		name: "write",
		ctx:  func(o *fuseops.WriteFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.WriteFileOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.writeFile(o, now)
		},
		target: func(o *fuseops.WriteFileOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindFsync: row(opSpec[fuseops.SyncFileOp]{
		name: "fsync",
		ctx:  func(o *fuseops.SyncFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.SyncFileOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return st.flush(uint64(o.Inode))
		},
		target: func(o *fuseops.SyncFileOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindFlush: row(opSpec[fuseops.FlushFileOp]{
		name: "flush",
		ctx:  func(o *fuseops.FlushFileOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.FlushFileOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return st.flush(uint64(o.Inode))
		},
		target: func(o *fuseops.FlushFileOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindRelease: row(opSpec[fuseops.ReleaseFileHandleOp]{
		name: "release",
		ctx:  func(o *fuseops.ReleaseFileHandleOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReleaseFileHandleOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.releaseHandle(uint64(o.Handle)))
		},
	}),
	kindReadlink: row(opSpec[fuseops.ReadSymlinkOp]{
		name: "readlink",
		ctx:  func(o *fuseops.ReadSymlinkOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ReadSymlinkOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.readSymlink(o))
		},
		target: func(o *fuseops.ReadSymlinkOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindRemoveXattr: row(opSpec[fuseops.RemoveXattrOp]{
		name: "removexattr",
		ctx:  func(o *fuseops.RemoveXattrOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.RemoveXattrOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.removeXattr(o, now)
		},
		target: func(o *fuseops.RemoveXattrOp) (uint64, string, string) { return onName(o.Inode, o.Name) },
	}),
	kindGetXattr: row(opSpec[fuseops.GetXattrOp]{
		name: "getxattr",
		ctx:  func(o *fuseops.GetXattrOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.GetXattrOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.getXattr(o))
		},
		target: func(o *fuseops.GetXattrOp) (uint64, string, string) { return onName(o.Inode, o.Name) },
	}),
	kindListXattr: row(opSpec[fuseops.ListXattrOp]{
		name: "listxattr",
		ctx:  func(o *fuseops.ListXattrOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.ListXattrOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.listXattr(o))
		},
		target: func(o *fuseops.ListXattrOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindSetXattr: row(opSpec[fuseops.SetXattrOp]{
		name: "setxattr",
		ctx:  func(o *fuseops.SetXattrOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.SetXattrOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.setXattr(o, now)
		},
		target: func(o *fuseops.SetXattrOp) (uint64, string, string) { return onName(o.Inode, o.Name) },
	}),
	kindFallocate: row(opSpec[fuseops.FallocateOp]{
		name: "fallocate",
		ctx:  func(o *fuseops.FallocateOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, o *fuseops.FallocateOp, _ Caller, now time.Time) (uint64, syscall.Errno) {
			return st.fallocate(o, now)
		},
		target: func(o *fuseops.FallocateOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindSyncFS: row(opSpec[fuseops.SyncFSOp]{
		name: "syncfs",
		ctx:  func(o *fuseops.SyncFSOp) *fuseops.OpContext { return &o.OpContext },
		handle: func(st *State, _ *fuseops.SyncFSOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return st.lsn, 0 // everything emitted so far
		},
		target: func(o *fuseops.SyncFSOp) (uint64, string, string) { return onInode(o.Inode) },
	}),
	kindStatFS: row(opSpec[fuseops.StatFSOp]{
		name: "statfs",
		ctx:  func(*fuseops.StatFSOp) *fuseops.OpContext { return nil }, // the op carries none
		handle: func(st *State, o *fuseops.StatFSOp, _ Caller, _ time.Time) (uint64, syscall.Errno) {
			return only(st.statFS(o))
		},
	}),
}

// kindOf names op's kind: kindUnknown for a type no row has (jacobsa's
// unexported unknownOp, or anything new). The one type switch of fsactor.
// Chosen over a map from the op's reflect.Type built from opTable (which
// would spare this switch its one case per row) after measuring both on a
// mix of every kind (BenchmarkClassify): 9-19 ns for the switch against
// 28-46 ns for the map, both without allocation; each op is classified
// twice (the loop, then State.Handle). TestOpTableRows checks that every
// row's type finds its row here.
func kindOf(op any) opKind {
	switch op.(type) {
	case *fuseops.LookUpInodeOp:
		return kindLookUp
	case *fuseops.GetInodeAttributesOp:
		return kindGetAttr
	case *fuseops.SetInodeAttributesOp:
		return kindSetAttr
	case *fuseops.ForgetInodeOp:
		return kindForget
	case *fuseops.BatchForgetOp:
		return kindBatchForget
	case *fuseops.MkDirOp:
		return kindMkDir
	case *fuseops.MkNodeOp:
		return kindMkNode
	case *fuseops.CreateFileOp:
		return kindCreate
	case *fuseops.CreateSymlinkOp:
		return kindSymlink
	case *fuseops.CreateLinkOp:
		return kindLink
	case *fuseops.RenameOp:
		return kindRename
	case *fuseops.RmDirOp:
		return kindRmDir
	case *fuseops.UnlinkOp:
		return kindUnlink
	case *fuseops.OpenDirOp:
		return kindOpenDir
	case *fuseops.ReadDirOp:
		return kindReadDir
	case *fuseops.ReadDirPlusOp:
		return kindReadDirPlus
	case *fuseops.ReleaseDirHandleOp:
		return kindReleaseDir
	case *fuseops.OpenFileOp:
		return kindOpen
	case *fuseops.ReadFileOp:
		return kindRead
	case *fuseops.WriteFileOp:
		return kindWrite
	case *fuseops.SyncFileOp:
		return kindFsync
	case *fuseops.FlushFileOp:
		return kindFlush
	case *fuseops.ReleaseFileHandleOp:
		return kindRelease
	case *fuseops.ReadSymlinkOp:
		return kindReadlink
	case *fuseops.RemoveXattrOp:
		return kindRemoveXattr
	case *fuseops.GetXattrOp:
		return kindGetXattr
	case *fuseops.ListXattrOp:
		return kindListXattr
	case *fuseops.SetXattrOp:
		return kindSetXattr
	case *fuseops.FallocateOp:
		return kindFallocate
	case *fuseops.SyncFSOp:
		return kindSyncFS
	case *fuseops.StatFSOp:
		return kindStatFS
	}
	return kindUnknown
}

// classify names op's kind and returns its OpContext (nil for statfs, whose
// op carries none, and for unknown ops).
func classify(op any) (opKind, *fuseops.OpContext) {
	k := kindOf(op)
	return k, opTable[k].ctx(op)
}

// opTarget returns the inode an op is about (the parent directory for ops
// on a name), the name, and for rename the new name: the access log's
// fields, from the row of op's own type.
func opTarget(op any) (ino uint64, name, to string) {
	return opTable[kindOf(op)].target(op)
}

// createdIno returns the inode an op of kind k made (create, mkdir, mknod,
// symlink), 0 for other ops: the access log's new_ino.
func createdIno(k opKind, op any) uint64 {
	if f := opTable[k].created; f != nil {
		return f(op)
	}
	return 0
}

// failedWaitNotes are the notes that make the kernel forget what it
// caches about the names and attributes an op changed, for an op the state
// applied and that then answered EIO because its record did not become
// durable in time (a rename or link, or any mutation with the sync mount
// option). The change stays in the volume — in memory and in the log, to
// be shipped when replicas return — but the kernel, seeing the error,
// keeps its cache as before the call: after a failed rename the old name
// stays positive and the new one negative, so a name readdir lists would
// answer ENOENT until the entry timeout ends. Written by the notify pool
// after the reply, as every note.
func failedWaitNotes(k opKind, op any) []Note {
	if f := opTable[k].failedWait; f != nil {
		return f(op)
	}
	return nil
}
