// Package bench measures filesystems under the workloads of a mail spool and
// compares spoolfs with its anchors side by side.
//
// Who owns what:
//   - workload.go: the three workloads (meta, write4k, spool), one client's
//     iteration each, on raw syscalls with absolute paths as a mail server
//     uses them.
//   - run.go: Run drives N clients against one directory, bounded by a count
//     and a duration, and returns ops/s and latency percentiles (hist.go);
//     it removes every file and client directory it made.
//   - timeline.go: the run's iteration count sampled every 100 ms (one
//     goroutine): throughput over time, and what `spoolfs bench`'s progress
//     bar shows (Options.Progress).
//   - summary.go, plot.go: what `spoolfs bench DIR` reports of one run: a
//     table or --json (Summary), and --plot's PNG (gonum/plot: latency
//     percentiles of an iteration and of fsync, close, rename; throughput).
//   - system.go: the systems under test and their mounts: tmpfs (mount -t
//     tmpfs), jacobsa's memfs sample served in this process, and spoolfs
//     --local as a subprocess. Every mount is registered in a Mounts set that
//     unmounts it at the end, also after a failure or a signal.
//   - trace.go: counts FUSE requests per operation, by opcode, through the
//     kernel's fuse_request_send/fuse_request_end tracepoints in a private
//     tracefs instance filtered on the mount's connection. It runs in its own
//     untimed pass and never slows the timed runs.
//   - compare.go, report.go: the interleaved comparison (round-robin over the
//     systems, medians of R rounds) and its Markdown report.
//   - replicated.go, report_replicated.go: the replicated suite (make
//     bench-replicated): a directory of the local disk against spoolfs
//     mounted --replicas on three `spoolfs replica` processes, the targets
//     of issue 3, and p50/p99 of fsync, close and rename (Steps, recorded
//     by the workloads).
//   - follow.go: the follower-lag benchmark (make bench-follow, `spoolfs
//     bench follow-lag`): three replicas, a primary and a follower, files
//     created on the primary at a paced rate, each stat'ed on the follower
//     from its close() returning until it answers; p50/p99/max and the
//     target of issue 11.
//
// Nothing here is used by a mounted volume: the package is a tool of
// `spoolfs bench`, `make bench-local`, `make bench-replicated` and `make bench-follow`.
package bench
