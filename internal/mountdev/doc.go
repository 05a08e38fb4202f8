// Package mountdev owns the mount device and the mount point of a FUSE
// volume, everything below the protocol: checking a mount point
// (PrepareMountPoint: missing, not a directory, a live FUSE mount already
// there, a stale one whose server died, which it detaches and replaces),
// opening /dev/fuse and mounting it (Mount: mount(2) with privilege,
// fusermount3 and SCM_RIGHTS without, as libfuse does), unmounting
// (Unmount: retry while busy, then lazy; Detach; UnmountSpoolfs for
// `spoolfs umount`, which refuses anything but a spoolfs mount), telling a dead mount
// (Dead), and reading a mount table (ReadMountInfo, ReadMountInfoOf,
// MountsAt: /proc/self/mountinfo or /proc/PID/mountinfo, parsed by
// prometheus/procfs; mountdev undoes the kernel's octal escapes, which
// procfs keeps).
//
// What is served on the device is not its business: node hands it to
// jacobsa/fuse and fsactor, and keeps the descriptor for notifications
// (docs/architecture.md, "Mounting"). Its behaviour is tested through the
// binary by node's mount tests (mount_test.go: busy, stale, read-only,
// allow_other, non-root through fusermount3, aborted connections); its
// parsing here.
//
// May import: the standard library, x/sys/unix, zap, prometheus/procfs
// (the mount table) and cenkalti/backoff (Unmount's retries); nothing of this
// module, never jacobsa/fuse, fsactor or replication (internal/layout).
// Goroutines: a stat of a mount point, bounded by a deadline, that may
// outlive the call if the mount hangs.
package mountdev
