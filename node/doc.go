// Package node wires one spoolfs process: it mounts volumes and serves
// them until they are unmounted or the process is signalled.
//
// Ownership: node owns the mount lifecycle. Mount checks the mount point
// (missing, not a directory, a live FUSE mount already there, or a stale
// one left by a killed server, which it detaches and replaces), mounts
// with mount(2) as root (or with CAP_SYS_ADMIN) or through fusermount3
// otherwise, keeps the /dev/fuse descriptor for kernel notifications and
// hands a duplicate to jacobsa/fuse, which runs fsactor's server on it.
// ServeUntilSignal turns SIGINT/SIGTERM into a clean unmount (retry while
// busy, then lazy) and a second signal into a forced exit. The process
// logger (NewLogger), the open-file limit (RaiseFileLimit) and the parsing
// of mount options (ApplyOptionString, ParseBytes) live here too, so the
// CLI in cmd/spoolfs stays free of logic.
//
// Goroutines started here: one per volume waiting for jacobsa's ServeOps
// to return (it closes the device and Done); one per unmount in progress;
// internal/mountdev may leave a stat of a mount point, bounded by a
// deadline.
//
// Replicated volumes (issue 3): MountReplicated (primary.go) makes this
// node a volume's primary — a new term and recovery from the replicas
// before the mount exists — and mounts it with a sink shipping its records;
// StartReplica (replica.go) serves the replication service; a Node
// (run.go) holds the replica servers, volumes and admin endpoint of one
// process, from a Config (config.go, the YAML of `spoolfs run -c`) or as
// the embedded cluster of `make run` (cluster.go); admin.go, metrics.go
// and status.go serve /metrics, /healthz, /readyz, /status and pprof, and
// print `spoolfs status`. internal/tlsid makes and loads mTLS material
// (`spoolfs certs`, tlsid.Files) and internal/config reads it from the config, where the
// certificate's common name is the node id; procs.go sizes GOMAXPROCS of a
// process that is only a replica. docs/threads.md lists every goroutine.
//
// Files: volume.go (Mount, Volume: fsactor served on a device that
// internal/mountdev mounted), serve.go (signals),
// options.go, rlimit.go, log.go. ServeChild (serve.go) runs a command inside
// the mount with internal/launch, then unmounts; replsink.go (the
// replication adapter) belong to their own authors; primary.go,
// procs.go,
// replica.go, run.go, cluster.go, config*.go, admin.go, metrics.go,
// status.go, waits.go and progress.go to the replication wiring.
package node
