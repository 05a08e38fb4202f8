package faultnet

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// errReset is what a reset connection's reads and writes return.
var errReset = &netError{err: syscall.ECONNRESET}

// pipe is one direction of a connection: an unbounded queue of chunks
// written by one end and read by the other.
type pipe struct {
	mu sync.Mutex
	// notify is closed and replaced on every change a blocked reader may
	// be waiting for.
	notify chan struct{}
	// INVARIANT: chunks are in write order; a reader takes the first one
	// only once its time has come.
	chunks  []chunk
	delay   time.Duration // added to each chunk written from now on
	held    bool          // paused: nothing is delivered until released
	wclosed bool          // the writer closed: EOF once the queue is empty
	rclosed bool          // the reader is gone: writes are dropped
	broken  bool          // reset: reads and writes fail at once
}

type chunk struct {
	data []byte
	at   time.Time // not delivered before
}

func newPipe(delay time.Duration, held bool) *pipe {
	return &pipe{notify: make(chan struct{}), delay: delay, held: held}
}

// changedLocked wakes the reader (caller holds p.mu).
func (p *pipe) changedLocked() {
	close(p.notify)
	p.notify = make(chan struct{})
}

func (p *pipe) update(f func(p *pipe)) {
	p.mu.Lock()
	f(p)
	p.changedLocked()
	p.mu.Unlock()
}

func (p *pipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.broken:
		return 0, errReset
	case p.wclosed:
		return 0, &netError{err: errors.New("use of closed connection")}
	case p.rclosed:
		return len(b), nil // into the void, as to a peer that went away
	}
	p.chunks = append(p.chunks, chunk{data: append([]byte(nil), b...), at: time.Now().Add(p.delay)})
	p.changedLocked()
	return len(b), nil
}

// read blocks until data is due, the writer closed (EOF), the pipe
// broke, or the deadline passed; done ends the wait when this end is
// closed. deadline is read again whenever the pipe changes (SetDeadline
// wakes the reader).
func (p *pipe) read(b []byte, done <-chan struct{}, deadline func() time.Time) (int, error) {
	for {
		p.mu.Lock()
		n, wait, err := p.tryReadLocked(b)
		ch := p.notify
		p.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
		if dl := deadline(); !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, errTimeout
			}
			if wait == 0 || left < wait {
				wait = left
			}
		}
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
		case <-done:
			err = &netError{err: errors.New("use of closed connection")}
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return 0, err
		}
	}
}

// tryReadLocked takes what is due; wait > 0 is how long until the next
// chunk is.
func (p *pipe) tryReadLocked(b []byte) (n int, wait time.Duration, err error) {
	if p.broken {
		return 0, 0, errReset
	}
	if p.held {
		return 0, 0, nil
	}
	if len(p.chunks) == 0 {
		if p.wclosed {
			return 0, 0, io.EOF
		}
		return 0, 0, nil
	}
	c := &p.chunks[0]
	if d := time.Until(c.at); d > 0 {
		return 0, d, nil
	}
	n = copy(b, c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 {
		p.chunks[0] = chunk{}
		p.chunks = p.chunks[1:]
	}
	return n, 0, nil
}

// errTimeout is what a read past its deadline returns.
var errTimeout = &netError{err: os.ErrDeadlineExceeded, timeout: true}

// netError is a net.Error.
type netError struct {
	err     error
	timeout bool
}

func (e *netError) Error() string   { return "faultnet: " + e.err.Error() }
func (e *netError) Unwrap() error   { return e.err }
func (e *netError) Timeout() bool   { return e.timeout }
func (e *netError) Temporary() bool { return e.timeout }
