package mountdev

import (
	"errors"
	"fmt"
	"os"
)

// SpoolfsFSType is the filesystem type a spoolfs mount shows in
// /proc/mounts ("fuse." and the subtype mount(2) or fusermount3 was given).
const SpoolfsFSType = "fuse.spoolfs"

// UnmountSpoolfs is `spoolfs umount`: it unmounts the spoolfs volume
// visible at dir once, and returns what was mounted there. It refuses a
// dir where the topmost mount is not spoolfs's, so a typo cannot unmount
// /home. A mount still in use answers EBUSY (wrapped) unless lazy, which
// detaches it at once (MNT_DETACH: gone from the namespace, torn down
// when its last open file is closed). As root it calls umount2; without
// the privilege, fusermount3 -u [-z], which lets the user who mounted it
// unmount it.
func UnmountSpoolfs(dir string, lazy bool) (MountInfo, error) {
	real, err := resolveMountPoint(dir)
	if err != nil {
		return MountInfo{}, err
	}
	at, err := MountsAt(real)
	if err != nil {
		return MountInfo{}, err
	}
	if len(at) == 0 {
		if _, err := os.Stat(real); errors.Is(err, os.ErrNotExist) {
			return MountInfo{}, fmt.Errorf("%s: no such directory", real)
		}
		return MountInfo{}, fmt.Errorf("%s: not a spoolfs mount (nothing is mounted there)", real)
	}
	top := at[len(at)-1]
	if top.FSType != SpoolfsFSType {
		return top, fmt.Errorf("%s: not a spoolfs mount: it is %s (%s); unmount it with umount(8)", real, top.FSType, top.Source)
	}
	if lazy {
		_, err = Detach(real)
	} else {
		err = unmountOnce(real, MethodDirect) // EPERM: fusermount3
	}
	if errors.Is(err, ErrNotMounted) { // gone between the look and the unmount
		err = nil
	}
	return top, err
}
