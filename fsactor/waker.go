package fsactor

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker gets the inline actor out of ReadOp when an internal event is
// waiting for it. The inline actor (loop.serveInline) is the goroutine that
// reads the FUSE device: while the kernel has nothing for it, it sleeps in
// read(2) and sees its mailbox only when the next request arrives. To make
// a request arrive, the waker's goroutine statfs(2)s the mount point: the
// kernel never answers STATFS from a cache, so the actor gets an op, drains
// its mailbox first, then answers the STATFS.
//
// The waker never holds a descriptor on the mount (that would make a plain
// unmount fail with EBUSY); it goes by path, so a file system mounted over
// the mount point would hide the volume from it (events then wait for the
// next request of the kernel). docs/threads.md lists its goroutine.
type waker struct {
	dir     string
	pending atomic.Bool   // a wake is on its way and the actor has not drained since
	kick    chan struct{} // capacity 1
	quit    chan struct{}
	done    chan struct{}
	statfs  func(dir string) error // unix.Statfs; tests replace it
}

func newWaker(dir string) *waker {
	w := &waker{
		dir:  dir,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
		statfs: func(dir string) error {
			var s unix.Statfs_t
			return unix.Statfs(dir, &s)
		},
	}
	return w
}

// run is the waker's goroutine: one statfs per kick.
func (w *waker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.kick:
			_ = w.statfs(w.dir) // the answer does not matter, the request does
		case <-w.quit:
			return
		}
	}
}

// wake asks for a request, unless one is already on its way. Safe from any
// goroutine; a nil waker does nothing.
func (w *waker) wake() {
	if w == nil || !w.pending.CompareAndSwap(false, true) {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// rearm is called by the actor before it drains its mailbox: an event sent
// after this point wakes again; one sent before it is in the drain.
func (w *waker) rearm() {
	if w != nil {
		w.pending.Store(false)
	}
}

// stop ends the goroutine and waits for it.
func (w *waker) stop() {
	if w != nil {
		close(w.quit)
		<-w.done
	}
}
