package fsactor

import "github.com/jacobsa/fuse/fuseops"

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
func failedWaitNotes(op any) []Note {
	entry := func(parent fuseops.InodeID, name string) Note {
		return Note{Kind: NoteInvalEntry, Parent: uint64(parent), Name: name}
	}
	switch o := op.(type) {
	case *fuseops.RenameOp:
		return []Note{entry(o.OldParent, o.OldName), entry(o.NewParent, o.NewName)}
	case *fuseops.CreateLinkOp:
		return []Note{entry(o.Parent, o.Name), {Kind: NoteInvalInode, Child: uint64(o.Target), Off: -1}} // nlink: attributes only
	case *fuseops.UnlinkOp, *fuseops.RmDirOp, *fuseops.MkDirOp, *fuseops.MkNodeOp,
		*fuseops.CreateSymlinkOp, *fuseops.CreateFileOp:
		parent, name, _ := opTarget(op) // the one name these ops change
		return []Note{entry(fuseops.InodeID(parent), name)}
	case *fuseops.SetInodeAttributesOp:
		return []Note{{Kind: NoteInvalInode, Child: uint64(o.Inode), Len: -1}}
	}
	return nil
}
