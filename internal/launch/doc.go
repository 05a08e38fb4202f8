// Package launch owns running a command inside a mount and the namespaces
// it runs in (DESIGN.md, "Launch"): RunChild waits until the mount is
// listed, starts the command with spoolfs's stdio, forwards SIGTERM,
// SIGINT and SIGHUP, gives it a stop grace before SIGKILL and reports its
// exit status as a shell would (ExitCode); RunChildIn also stops it when
// the volume stops serving (Served). While the command runs this process
// is a child subreaper and stops the orphans it leaves (reap.go).
// RunUnshared re-executes spoolfs in new user and mount namespaces
// (`--unshare`) and EnterUnshared makes the inner process's mounts
// private; ProbeMount is `spoolfs probe`, the liveness probe a container
// runs from outside those namespaces.
//
// It never makes a request to a mount this process serves (docs/failures.md,
// finding 1): readiness is read from the mount table (internal/mountdev),
// and only ProbeMount, run by another process, statfs's a mount.
//
// May import: the standard library, x/sys/unix, zap, prometheus/procfs
// (processes and their parents), cenkalti/backoff and internal/mountdev
// (the mount table); never FUSE, the actor or replication
// (internal/layout). Goroutines: one waits for the child; RunChildIn's
// watcher of the volume; ProbeMount's statfs, bounded by its timeout.
// docs/threads.md lists them.
package launch
