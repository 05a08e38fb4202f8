package faultnet

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one end of an in-memory connection.
type Conn struct {
	n             *Network
	p             pair // who dialed whom
	peer          *Conn
	in, out       *pipe
	local, remote net.Addr

	once sync.Once
	done chan struct{} // closed when this end is closed, reset or stranded

	rdl atomic.Pointer[time.Time] // read deadline; nil: none
}

var _ net.Conn = (*Conn)(nil)

// Read reads what the peer wrote and is due.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return c.in.read(b, c.done, c.readDeadline)
}

func (c *Conn) readDeadline() time.Time {
	if t := c.rdl.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Write queues b for the peer; it never blocks.
func (c *Conn) Write(b []byte) (int, error) {
	select {
	case <-c.done:
		return 0, errReset
	default:
	}
	return c.out.write(b)
}

// Close closes this end: the peer reads what was written, then EOF.
func (c *Conn) Close() error {
	c.out.update(func(p *pipe) { p.wclosed = true })
	c.in.update(func(p *pipe) { p.rclosed, p.chunks = true, nil })
	c.end()
	return nil
}

// end closes this end's done channel once.
func (c *Conn) end() {
	c.once.Do(func() {
		close(c.done)
		c.n.forget(c)
	})
}

// reset breaks the connection: both ends fail at once.
func (c *Conn) reset() {
	c.in.update(func(p *pipe) { p.broken, p.chunks = true, nil })
	c.out.update(func(p *pipe) { p.broken, p.chunks = true, nil })
	c.end()
	c.peer.end()
}

// strand: this end fails at once; what it wrote reaches the peer after
// the delay, then EOF; what the peer writes is lost (Network.Strand).
func (c *Conn) strand(after time.Duration) {
	c.out.update(func(p *pipe) { p.held, p.wclosed = true, true })
	c.in.update(func(p *pipe) { p.rclosed, p.chunks = true, nil })
	c.end()
	time.AfterFunc(after, func() { c.out.update(func(p *pipe) { p.held = false }) })
}

func (c *Conn) setHeld(h bool) {
	c.in.update(func(p *pipe) { p.held = h })
	c.out.update(func(p *pipe) { p.held = h })
}

func (c *Conn) setDelay(d time.Duration) {
	c.in.update(func(p *pipe) { p.delay = d })
	c.out.update(func(p *pipe) { p.delay = d })
}

// LocalAddr is this end's endpoint name.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the peer's endpoint name.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read deadline (writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline bounds reads, the one that waits now included: a
// gRPC server bounds its handshake so, and a paused connection must not
// hold it past that.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(&t)
	c.in.update(func(*pipe) {}) // wake a reader to see it
	return nil
}

// SetWriteDeadline is accepted and ignored: writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
