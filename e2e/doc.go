// Package e2e holds the end-to-end tests of spoolfs: they build the real
// binary (cmd/spoolfs), mount volumes with `spoolfs mount --local` as a user
// would, and check them from the outside through system calls only.
//
// Linux tmpfs is the reference: every POSIX case runs the same scenario on a
// private tmpfs (mounted by the tests) and on the spoolfs mount and compares
// what the two observed (posix_test.go), and a seeded differential test
// applies the same random operations to both and compares every result and,
// regularly, the whole tree (diff_test.go, flags -diff.ops and -diff.seed).
// fsx_test.go ports fsx's operation loop (xfstests ltp/fsx.c) and checks
// one file against a model through reads, mmap, truncate, fallocate modes
// and copy_file_range (flags -fsx.ops and -fsx.seed).
// Concurrency tests (readdir under mutation, rename races, many spool
// clients) check invariants on the spoolfs mount alone.
//
// Replicated volumes run as real processes on loopback (cluster_test.go):
// replicas, primaries, and followers (follower_harness_test.go), whose
// trees are compared with their primary's by names, inode numbers and
// contents (follower_test.go), promoted (follower_promote_test.go) and
// watched through the fault-injection test (faults_follower_test.go).
//
// The tests need root and /dev/fuse. When they cannot mount they fail with
// CI=true and skip, saying why, otherwise. `-e2e.subject=tmpfs` runs the
// whole suite against a second tmpfs instead of spoolfs, which checks the
// test machinery itself (tmpfs against tmpfs must always pass).
//
// This package has no non-test API; it belongs to the tests.
package e2e
