package fsactor

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// Linux limits: XATTR_NAME_MAX and XATTR_SIZE_MAX.
const (
	xattrNameMax = 255
	xattrSizeMax = 64 << 10
)

// The flags of setxattr(2).
const (
	xattrCreate  = 1
	xattrReplace = 2
)

// xattr is one extended attribute. value is never modified in place (a
// record may share it).
type xattr struct {
	name  string
	value []byte
}

// findXattr returns where name is or would go in in.xattrs.
func (in *inode) findXattr(name string) (int, bool) {
	i := sort.Search(len(in.xattrs), func(i int) bool { return in.xattrs[i].name >= name })
	return i, i < len(in.xattrs) && in.xattrs[i].name == name
}

// checkXattrName applies Linux's rules for a name: its length, then its
// namespace. tmpfs knows user., trusted. and security.; system. holds POSIX
// ACLs there, which spoolfs does not enforce, so it refuses them rather
// than store an ACL nobody checks (permissions are the mode bits).
func checkXattrName(name string) syscall.Errno {
	if name == "" || len(name) > xattrNameMax {
		return syscall.ERANGE
	}
	for _, ns := range [...]string{"user.", "trusted.", "security."} {
		if strings.HasPrefix(name, ns) {
			if len(name) == len(ns) {
				return syscall.EINVAL
			}
			return 0
		}
	}
	return syscall.EOPNOTSUPP
}

func (st *State) setXattr(o *fuseops.SetXattrOp, now time.Time) (uint64, syscall.Errno) {
	in, i, found, e := st.xattrTarget(o.Inode, o.Name)
	if e != 0 {
		return 0, e
	}
	switch {
	case len(o.Value) > xattrSizeMax:
		return 0, syscall.E2BIG
	case o.Flags&^(xattrCreate|xattrReplace) != 0:
		return 0, syscall.EINVAL
	case o.Flags&xattrCreate != 0 && found:
		return 0, syscall.EEXIST
	case o.Flags&xattrReplace != 0 && !found:
		return 0, syscall.ENODATA
	}
	val := bytes.Clone(o.Value) // jacobsa reuses its buffer
	if val == nil {
		val = []byte{}
	}
	if found {
		in.xattrs[i].value = val
	} else {
		in.xattrs = slices.Insert(in.xattrs, i, xattr{name: o.Name, value: val})
	}
	return st.xattrChanged(in, &Record{Op: RecSetXattr, XattrName: o.Name, Data: val}, now), 0
}

// xattrTarget checks what setxattr and removexattr check first (the
// volume writable, the inode, the name) and finds the name in the
// inode's sorted xattrs: its index, or where it would go.
func (st *State) xattrTarget(ino fuseops.InodeID, name string) (*inode, int, bool, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return nil, 0, false, e
	}
	in, e := st.getInode(uint64(ino))
	if e != 0 {
		return nil, 0, false, e
	}
	if e := checkXattrName(name); e != 0 {
		return nil, 0, false, e
	}
	i, found := in.findXattr(name)
	return in, i, found, 0
}

// xattrChanged stamps in's ctime and emits r for it (an inode outside the
// volume, unlinked, emits nothing): the LSN a reply waits for, or 0.
func (st *State) xattrChanged(in *inode, r *Record, now time.Time) uint64 {
	in.attr.Ctime = now.UnixNano()
	if !inVolume(in) {
		return 0
	}
	r.Ino, r.Attr = in.ino, in.attr
	return st.mutationWait(st.emit(in, r))
}

func (st *State) removeXattr(o *fuseops.RemoveXattrOp, now time.Time) (uint64, syscall.Errno) {
	in, i, found, e := st.xattrTarget(o.Inode, o.Name)
	if e != 0 {
		return 0, e
	}
	if !found {
		return 0, syscall.ENODATA
	}
	in.xattrs = slices.Delete(in.xattrs, i, i+1)
	return st.xattrChanged(in, &Record{Op: RecRemoveXattr, XattrName: o.Name}, now), 0
}

// getXattr: an empty buffer asks for the size; a short one is ERANGE.
func (st *State) getXattr(o *fuseops.GetXattrOp) syscall.Errno {
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return e
	}
	if e := checkXattrName(o.Name); e != 0 {
		return e
	}
	i, found := in.findXattr(o.Name)
	if !found {
		return syscall.ENODATA
	}
	v := in.xattrs[i].value
	o.BytesRead = len(v)
	switch {
	case len(o.Dst) == 0:
		return 0
	case len(o.Dst) < len(v):
		return syscall.ERANGE
	}
	copy(o.Dst, v)
	return 0
}

// listXattr writes the names, each NUL-terminated, in name order.
func (st *State) listXattr(o *fuseops.ListXattrOp) syscall.Errno {
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return e
	}
	total := 0
	for _, x := range in.xattrs {
		total += len(x.name) + 1
	}
	o.BytesRead = total
	switch {
	case len(o.Dst) == 0:
		return 0
	case len(o.Dst) < total:
		return syscall.ERANGE
	}
	n := 0
	for _, x := range in.xattrs {
		n += copy(o.Dst[n:], x.name)
		o.Dst[n] = 0
		n++
	}
	return 0
}
