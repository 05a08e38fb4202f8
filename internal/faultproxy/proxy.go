// Package faultproxy is a TCP proxy on loopback that tests put between a
// client and a server to inject network faults: a blackhole (connections
// stay open, bytes stop, as in a partition or a stopped peer), a reset
// (every connection closed with RST, new ones refused) and a heal (bytes
// flow again; held bytes are delivered, as TCP retransmits after a
// partition heals).
//
// It is test support, used by the replication tests and the process-level
// fault tests in e2e. It holds no state beyond its connections and never
// drops or reorders bytes: a blackholed connection keeps what it read and
// writes it on Heal, and stops reading, so the sender's socket buffers
// fill and its writes block as they would across a real partition.
//
//	p, err := faultproxy.New("127.0.0.1:7000")
//	defer p.Close()
//	dial(p.Addr())
//	p.Blackhole() // ... p.Heal()
//	p.Reset()     // ... p.Heal()
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// mode is what the proxy does with bytes and connections.
type mode int

const (
	pass      mode = iota // forward bytes both ways
	blackhole             // keep connections open, forward nothing
	refuse                // close every connection with RST at once
)

// Proxy forwards TCP connections from its own loopback address to a target.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every connection's pumps

	mu sync.Mutex
	// INVARIANT: healed is closed exactly when mode == pass; a new, open
	// channel replaces it when the proxy leaves pass.
	mode   mode
	healed chan struct{}
	conns  map[*pair]struct{} // INVARIANT: every open pair, none after Close
	closed bool
}

// pair is one client connection and its upstream connection.
type pair struct {
	client, server *net.TCPConn
	once           sync.Once
	done           chan struct{} // closed when the pair is closed
}

// New starts a proxy to target (host:port) on a new port of 127.0.0.1.
// Connections are forwarded (pass) until told otherwise.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{target: target, ln: ln, healed: healed, conns: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (127.0.0.1:port), to dial instead of target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Blackhole stops every byte, in both directions, on the open connections
// and on new ones (which are still accepted, as a peer's kernel would):
// nothing is closed, nothing is lost, reads on either side block.
func (p *Proxy) Blackhole() { p.setMode(blackhole) }

// Reset closes every open connection with RST and refuses new ones (each
// is accepted and reset at once) until Heal. A single connection reset is
// Reset followed by Heal.
func (p *Proxy) Reset() {
	p.setMode(refuse)
	p.mu.Lock()
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close(true)
	}
}

// Heal forwards bytes again: what blackholed connections held is delivered
// and new connections are forwarded.
func (p *Proxy) Heal() { p.setMode(pass) }

// Conns is the number of open proxied connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) setMode(m mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == m {
		return
	}
	if m == pass {
		close(p.healed)
	} else if p.mode == pass {
		p.healed = make(chan struct{})
	}
	p.mode = m
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c.(*net.TCPConn))
	}
}

// serve dials the target for one accepted connection and pumps bytes both
// ways until either side ends or the proxy closes the pair.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	p.mu.Lock()
	m, closed := p.mode, p.closed
	p.mu.Unlock()
	if closed || m == refuse {
		resetConn(client)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		resetConn(client) // the target is down: as a refused connection
		return
	}
	pr := &pair{client: client, server: up.(*net.TCPConn), done: make(chan struct{})}
	if !p.add(pr) {
		pr.close(true)
		return
	}
	defer p.remove(pr)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(pr, pr.server, pr.client) }()
	go func() { defer wg.Done(); p.pump(pr, pr.client, pr.server) }()
	wg.Wait()
	pr.close(false)
}

// add registers pr unless the proxy is closed or refusing.
func (p *Proxy) add(pr *pair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == refuse {
		return false
	}
	p.conns[pr] = struct{}{}
	return true
}

func (p *Proxy) remove(pr *pair) {
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// pump copies src to dst, holding its bytes while the proxy is not in pass
// mode. It closes the pair when src ends or dst fails.
func (p *Proxy) pump(pr *pair, dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.gate(pr) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(pr) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pr.close(false)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite() // pass the half close on
				return
			}
			pr.close(false)
			return
		}
	}
}

// gate waits until bytes may flow, and reports false if the pair closed.
func (p *Proxy) gate(pr *pair) bool {
	p.mu.Lock()
	healed := p.healed
	p.mu.Unlock()
	select {
	case <-pr.done:
		return false
	case <-healed:
	}
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

// close closes both connections, with RST if rst.
func (pr *pair) close(rst bool) {
	pr.once.Do(func() {
		close(pr.done)
		if rst {
			resetConn(pr.client)
			resetConn(pr.server)
			return
		}
		pr.client.Close()
		pr.server.Close()
	})
}

// resetConn closes c with RST rather than FIN.
func resetConn(c *net.TCPConn) {
	_ = c.SetLinger(0)
	c.Close()
}
