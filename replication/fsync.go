package replication

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// fsyncHeld fsyncs f without letting the Go scheduler hand this thread's
// P to another thread meanwhile.
//
// A commit's fsync takes 0.2–0.4 ms here. Through os.File.Sync the
// goroutine enters a blocking syscall: the runtime's monitor thread, which
// polls every 20 µs while syscalls keep happening, takes the P back after
// 20 µs and wakes another thread to run it, and when the fsync returns the
// thread has to get a P back. On a replica (GOMAXPROCS = its Ship streams,
// procs.go) that is two or three thread switches per commit for nothing:
// the only other work is receiving the next batch, which can wait in the
// socket. A raw system call keeps the P. Measured on the 2-vCPU bench VM
// at 8 spool writers: context switches per message on the quorum
// replicas fell from 15 to 8 and messages/s rose 16% (docs/benchmarks.md).
//
// The cost: while the disk holds the fsync, that P runs nothing else —
// with one stream, the whole replica (its other RPCs, /metrics) waits for
// its disk, and a garbage collection waits for the fsync to end. A replica
// stuck on its disk is of no use to the primary either; its hedge and
// quorum choice route around it (doc.go, "Quorum first").
func fsyncHeld(f *os.File) error {
	fd := f.Fd()
	for {
		_, _, e := unix.RawSyscall(unix.SYS_FSYNC, fd, 0, 0)
		switch e {
		case 0:
			runtime.KeepAlive(f)
			return nil
		case unix.EINTR: // a signal (the runtime's preemption): not an I/O error
			continue
		}
		runtime.KeepAlive(f)
		return e
	}
}
