/*
 * config.h for building xfstests' ltp/fsx.c alone (spoolfs, third_party/fsx).
 *
 * Not an upstream file: xfstests generates include/config.h with autoconf,
 * and src/global.h includes it. This stands in for it on Linux with glibc
 * (Debian's libc6-dev), defining the HAVE_* macros of the system headers
 * global.h then includes. Nothing of xfsprogs (xfs/xfs.h) is used: fsx is
 * built without -DXFS (its -x preallocation needs XFS ioctls), without
 * -DAIO (libaio) and without -DURING (liburing); see README.md.
 */
#ifndef SPOOLFS_FSX_CONFIG_H
#define SPOOLFS_FSX_CONFIG_H

#define STDC_HEADERS 1
#define HAVE_ASSERT_H 1
#define HAVE_DIRENT_H 1
#define HAVE_ERRNO_H 1
#define HAVE_ERR_H 1
#define HAVE_LIBGEN_H 1
#define HAVE_LINUX_FALLOC_H 1
#define HAVE_MALLOC_H 1
#define HAVE_STDLIB_H 1
#define HAVE_STRINGS_H 1
#define HAVE_STRING_H 1
#define HAVE_SYS_FCNTL_H 1
#define HAVE_SYS_IOCTL_H 1
#define HAVE_SYS_MMAN_H 1
#define HAVE_SYS_PARAM_H 1
#define HAVE_SYS_STATVFS_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TIME_H 1
#define HAVE_SYS_TYPES_H 1
#define HAVE_SYS_WAIT_H 1
#define HAVE_UNISTD_H 1

/*
 * What xfsprogs' headers bring in an xfstests build: getopt_long, and
 * <linux/fs.h> for FICLONERANGE and FIDEDUPERANGE, so that fsx probes the
 * clone and dedupe ops (and disables them where the filesystem says
 * EOPNOTSUPP, as FUSE does) instead of leaving them out unannounced.
 */
#include <getopt.h>
#include <linux/fs.h>

#endif /* SPOOLFS_FSX_CONFIG_H */
