package replication

import (
	"math"
	"strings"
)

// Limits bound what a replica accepts. The zero value of a field means its
// default.
type Limits struct {
	MaxFileSize   uint64 // data bytes of one regular file (default 4 GiB, the actor's fsactor.MaxFileData)
	MaxXattrValue int    // bytes of one xattr value (default 64 KiB, Linux's XATTR_SIZE_MAX)
	MaxTarget     int    // bytes of a symlink target (default 4095)
}

// MaxNameLen is the longest file or xattr name, in bytes.
const MaxNameLen = 255

// maxSize bounds Attr.Size. A file's size may exceed its data (a hole at
// the end reads as zeros, as after truncate): Limits.MaxFileSize bounds
// the data; sizes go as far as Linux's (MAX_LFS_FILESIZE), as on the
// primary (fsactor.MaxFileSize).
const maxSize = math.MaxInt64

func (l Limits) withDefaults() Limits {
	if l.MaxFileSize == 0 {
		l.MaxFileSize = 4 << 30
	}
	if l.MaxXattrValue == 0 {
		l.MaxXattrValue = 64 << 10
	}
	if l.MaxTarget == 0 {
		l.MaxTarget = 4095
	}
	return l
}

// checkName enforces DESIGN.md's rule for names: no '/', no NUL, not "."
// or "..", 1 to 255 bytes.
func checkName(field, name string) error {
	switch {
	case name == "":
		return invalidf("%s: empty name", field)
	case len(name) > MaxNameLen:
		return invalidf("%s: name of %d bytes exceeds %d", field, len(name), MaxNameLen)
	case name == "." || name == "..":
		return invalidf("%s: name %q is reserved", field, name)
	case strings.ContainsAny(name, "/\x00"):
		return invalidf("%s: name %q contains '/' or NUL", field, name)
	}
	return nil
}

func checkXattrName(name string) error {
	switch {
	case name == "":
		return invalidf("xattr name: empty")
	case len(name) > MaxNameLen:
		return invalidf("xattr name: %d bytes exceeds %d", len(name), MaxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return invalidf("xattr name %q contains NUL", name)
	}
	return nil
}

// checkMode accepts the seven Linux file types and permission bits only.
func checkMode(a Attr) error {
	if a.Mode&^uint32(0o177777) != 0 {
		return invalidf("mode %#o has bits beyond st_mode", a.Mode)
	}
	switch a.Mode & modeType {
	case modeDir, modeReg, modeLnk, modeFifo, modeChr, modeBlk, modeSock:
		return nil
	}
	return invalidf("mode %#o has no valid file type", a.Mode)
}

func checkTarget(target string, lim Limits) error {
	switch {
	case target == "":
		return invalidf("symlink: empty target")
	case len(target) > lim.MaxTarget:
		return invalidf("symlink: target of %d bytes exceeds %d", len(target), lim.MaxTarget)
	case strings.IndexByte(target, 0) >= 0:
		return invalidf("symlink: target contains NUL")
	}
	return nil
}

// checkRecordShape validates what a record says on its own, before it is
// held against the volume: known op, names, mode, sizes, and no field the
// op does not use.
func checkRecordShape(r *Record, lim Limits) error {
	if r.Op < OpCreate || r.Op > OpData {
		return invalidf("lsn %d: unknown op %d", r.LSN, r.Op)
	}
	if r.Ino == 0 {
		return invalidf("lsn %d %s: inode 0", r.LSN, r.Op)
	}
	if r.Attr.Size > maxSize {
		return invalidf("lsn %d %s: size %d exceeds the limit %d", r.LSN, r.Op, r.Attr.Size, uint64(maxSize))
	}
	if err := checkOpFields(r, lim); err != nil {
		return invalidf("lsn %d %s: %v", r.LSN, r.Op, err)
	}
	return nil
}

func checkOpFields(r *Record, lim Limits) error {
	usesName := r.Op <= OpRename
	if usesName {
		if err := checkName("name", r.Name); err != nil {
			return err
		}
	} else if r.Name != "" || r.Parent != 0 {
		return invalidf("unexpected parent/name")
	}
	if r.Op == OpRename {
		if err := checkName("new name", r.NewName); err != nil {
			return err
		}
	} else if r.NewName != "" || r.NewParent != 0 || r.Replaced != 0 {
		return invalidf("unexpected rename fields")
	}
	if r.Op == OpSetXattr || r.Op == OpRemoveXattr {
		if err := checkXattrName(r.XattrName); err != nil {
			return err
		}
	} else if r.XattrName != "" {
		return invalidf("unexpected xattr name")
	}
	return checkPayload(r, lim)
}

func checkPayload(r *Record, lim Limits) error {
	switch r.Op {
	case OpData:
		if err := checkContent(r.Extents, len(r.Data), r.Attr.Size, lim); err != nil {
			return err
		}
		if err := checkPartial(r); err != nil {
			return err
		}
	case OpSetXattr:
		if len(r.Data) > lim.MaxXattrValue {
			return invalidf("xattr value of %d bytes exceeds %d", len(r.Data), lim.MaxXattrValue)
		}
	default:
		if len(r.Data) != 0 {
			return invalidf("unexpected data")
		}
	}
	if r.Op != OpData && (r.Extents != nil || r.Partial || r.Ranges != nil) {
		return invalidf("unexpected extents or ranges")
	}
	if r.Op == OpCreate && isLnk(r.Attr) {
		return checkTarget(r.Target, lim)
	}
	if r.Target != "" {
		return invalidf("unexpected symlink target")
	}
	if r.Op == OpCreate || r.Op == OpLink || r.Op == OpSetattr || r.Op == OpData {
		return checkMode(r.Attr)
	}
	return nil
}
