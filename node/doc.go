// Package node wires one spoolfs process: which pieces it runs — mounts,
// replicated mounts, replica servers, the admin endpoint — and how they
// connect. The pieces themselves live in their own packages: the actor
// (fsactor), replication, the mount device and mount point
// (internal/mountdev), a command inside the mount and namespaces
// (internal/launch), TLS identity (internal/tlsid), the node config and
// mount options (internal/config), the admin endpoint and status types
// (internal/admin), the process's logger, signals and limits
// (internal/process). docs/architecture.md, "Packages", says why the cut is
// where it is.
//
// What node owns, by file:
//   - volume.go: Mount and Volume — a volume's actor (fsactor.NewServer)
//     served by jacobsa/fuse on a device internal/mountdev mounted, node
//     keeping the /dev/fuse descriptor for kernel notifications.
//   - serve.go: ServeUntilSignal (SIGINT/SIGTERM: a clean unmount, retried
//     while busy, then lazy; a second signal forces) and ServeChild (a
//     command inside the mount with internal/launch, then that unmount).
//   - primary.go: MountReplicated — a new term and recovery from the
//     replicas before the mount exists, then a mount whose sink ships its
//     records; watchFenced turns a fenced volume read-only.
//   - follower.go, follower_status.go: MountFollower and FollowerVolume —
//     a volume loaded from its most advanced replica and kept current by a
//     replication.Follower applying the primary's records to the actor
//     (fsactor Config.Follower: EROFS to every change); the stream stops
//     before the unmount. Promote (`spoolfs promote`, POST /promote)
//     takes a new term (OpenPrimary, fencing the old primary), hands the
//     actor the recovered state and a replicating sink (Server.Promote)
//     and serves it as a ReplicatedVolume, without an unmount; a failed
//     promotion resumes following. Its status, /readyz (streaming, lag
//     under --max-follow-lag) and metrics.
//   - served.go: what a Node serves, a primary or a follower (served),
//     and Node.Promote.
//   - replsink.go: the seam between fsactor's sink and replication's
//     primary (fsactor.Observer, wired in volume.go, times its waits).
//   - replica.go: StartReplica, the replication service of a data
//     directory; procs.go sizes GOMAXPROCS of a process that is only a
//     replica.
//   - run.go, cluster.go: Node, what `spoolfs run` serves from a
//     config.Node, and the embedded cluster of `make run`.
//   - health.go, metrics.go, status.go: what the admin endpoint reports,
//     read from the node's parts (admin.Source, the Prometheus collector,
//     Node.Status, QueryReplicas).
//   - progress.go: the progress of a recovery (or of a follower's first
//     load), a bar on a terminal.
//
// May import: fsactor, replication, volume, proto and internal
// (internal/layout). Goroutines started here: one per volume waiting for
// jacobsa's ServeOps to return (it closes the device and Done); one per
// unmount in progress; the fencing watcher of each replicated volume; the
// follower stream of each followed volume (replication.Follower.Run) and,
// after a failed promotion, its resume; a Node's watchers of its parts. docs/threads.md lists every goroutine.
package node
