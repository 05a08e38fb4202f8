package fsactor

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker is how the actor (loop.serveInline, the goroutine that reads the
// FUSE device and steps the ops) waits for work of either kind without a
// FUSE request: it sleeps in poll(2) on the device and on an eventfd. The
// device is the connection's (conn.Fd): /dev/fuse on a mount, an eventfd
// or a pipe that a fake kernel makes readable while it has a request
// queued, so the loop tests run this same wait without a kernel.
// Internal events (loop.send, loop.call: tasks' evTaskDone and evFenced,
// RemoveName, Snapshot, Do) write the eventfd after posting; the actor then
// drains its mailbox. It calls ReadOp only when poll says the device is
// readable.
//
// The device is put in O_NONBLOCK mode when serving starts, so that a read
// never sleeps. That matters: between poll and read the kernel may withdraw
// the request poll saw (a request interrupted by a fatal signal before it
// was read is unlinked from the pending list: request_wait_answer in
// fs/fuse/dev.c). A blocking read would then sleep until the next request,
// deaf to the eventfd. Non-blocking, read answers EAGAIN and the actor goes
// back to poll. jacobsa/fuse reads through an *os.File made by os.NewFile
// while the descriptor was still blocking (fuse.Mount on /dev/fd/N, before
// INIT), so Go did not register it with the netpoller and hands the EAGAIN
// back to us (*os.PathError from ReadOp) instead of parking the goroutine.
//
// The serving process never makes a FUSE request to its own mount: a
// request it made itself could only be answered by its own actor, and a
// SIGKILL between reading such a request and answering it leaves a thread
// in D state holding /dev/fuse, which keeps the connection, and so the
// request, alive forever (docs/failures.md, finding 1). docs/threads.md
// describes the wait.
type waker struct {
	dev int // the connection's device (conn.Fd), set by loop.run before serving
	efd int // eventfd, EFD_NONBLOCK

	// pending is set by the wake that wrote the eventfd and cleared by the
	// actor once it read it, before it drains: a wake after the clear
	// writes again, one before it is in the drain.
	pending atomic.Bool

	mu     sync.RWMutex // held by wake while it writes efd, so close cannot free it under it
	closed bool         // efd is closed; guarded by mu

	// Actor-owned.
	fds [2]unix.PollFd
	buf [8]byte
}

// eventOne is the 8-byte value a wake adds to the eventfd counter.
var eventOne = [8]byte{1}

// newWaker makes the eventfd; the device comes with the connection
// (loop.run). Until then wakes only count on the eventfd.
func newWaker() (*waker, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("fsactor: eventfd: %w", err)
	}
	return &waker{dev: -1, efd: efd}, nil
}

// start puts the device in non-blocking mode (for every descriptor of its
// open file, jacobsa's included). Called by the actor before its first
// ReadOp.
func (w *waker) start() error {
	if err := unix.SetNonblock(w.dev, true); err != nil {
		return fmt.Errorf("fsactor: O_NONBLOCK on /dev/fuse: %w", err)
	}
	return nil
}

// wait sleeps until the device has a request (or an error to report: the
// connection ended) or an internal event was posted. It says whether the
// device is worth a read. The eventfd is reset here, before the caller
// drains the mailbox. Actor only.
func (w *waker) wait() (devReady bool) {
	for {
		w.fds[0] = unix.PollFd{Fd: int32(w.dev), Events: unix.POLLIN}
		w.fds[1] = unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN}
		_, err := unix.Poll(w.fds[:], -1)
		if err == unix.EINTR {
			continue // a signal to the thread (Go's preemption): poll again
		}
		if err != nil {
			return true // cannot happen with valid descriptors; let ReadOp report
		}
		if w.fds[1].Revents != 0 {
			_, _ = unix.Read(w.efd, w.buf[:]) // resets the counter; EAGAIN if already reset
			w.pending.Store(false)
		}
		return w.fds[0].Revents != 0
	}
}

// wake makes the actor's wait return, unless a wake is already on its way.
// Safe from any goroutine, also after close; a nil waker does nothing.
func (w *waker) wake() {
	if w == nil || !w.pending.CompareAndSwap(false, true) {
		return
	}
	w.mu.RLock()
	if !w.closed {
		_, _ = unix.Write(w.efd, eventOne[:]) // cannot fail short of a counter overflow
	}
	w.mu.RUnlock()
}

// kernelWaiting says whether the device has a request nobody has read yet:
// a poll with no timeout, never a request. Safe from any goroutine while
// the device is open.
func (w *waker) kernelWaiting() bool {
	fds := [1]unix.PollFd{{Fd: int32(w.dev), Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
}

// close releases the eventfd once the actor no longer waits on it.
func (w *waker) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		unix.Close(w.efd)
	}
}
