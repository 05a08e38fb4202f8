// Package faultnet is an in-memory network for tests, with faults the test
// controls: connections between named endpoints that can be reset, cut
// off (partitioned), paused (a blackhole that later heals, as TCP
// retransmission would), delayed, or stranded (the dialing side sees a
// reset while what it had sent still reaches the listener later: a
// reorder across reconnections).
//
// Endpoints are strings. A listener is registered under an address; a
// client dials through Dialer(from), so that each fault applies to one
// (from, to) pair. Plug it into gRPC with
//
//	grpc.WithContextDialer(n.Dialer("primary-1"))
//
// and a "passthrough:///addr" target. Writes never block (the queues are
// unbounded; gRPC's flow control bounds them); nothing here sleeps.
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Network is a set of listeners and the connections dialed to them.
// Safe for concurrent use.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*Listener
	links     map[pair]*linkState
	// INVARIANT: conns holds every connection not yet closed by both ends
	// or reset, under the pair that dialed it.
	conns map[pair]map[*Conn]struct{}
}

type pair struct{ from, to string }

// linkState is the fault set on one (from, to) pair; new connections
// start with it.
type linkState struct {
	cut   bool          // dials refused
	held  bool          // paused
	delay time.Duration // each write delivered this late
}

// New returns an empty network.
func New() *Network {
	return &Network{listeners: map[string]*Listener{}, links: map[pair]*linkState{}, conns: map[pair]map[*Conn]struct{}{}}
}

func (n *Network) link(p pair) *linkState {
	l := n.links[p]
	if l == nil {
		l = &linkState{}
		n.links[p] = l
	}
	return l
}

// Listen registers a listener under addr.
func (n *Network) Listen(addr string) (net.Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listeners[addr] != nil {
		return nil, &netError{err: fmt.Errorf("listen %s: %w", addr, syscall.EADDRINUSE)}
	}
	l := &Listener{n: n, addr: addr, accept: make(chan *Conn, backlog), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dialer returns a dial function for endpoint from, the shape
// grpc.WithContextDialer takes.
func (n *Network) Dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) { return n.Dial(ctx, from, addr) }
}

// Dial connects from to the listener at addr.
func (n *Network) Dial(_ context.Context, from, addr string) (net.Conn, error) {
	p := pair{from, addr}
	n.mu.Lock()
	l, ls := n.listeners[addr], n.link(p)
	if l == nil || ls.cut {
		n.mu.Unlock()
		return nil, &netError{err: fmt.Errorf("dial %s from %s: %w", addr, from, syscall.ECONNREFUSED)}
	}
	c2s, s2c := newPipe(ls.delay, ls.held), newPipe(ls.delay, ls.held)
	client := &Conn{n: n, p: p, in: s2c, out: c2s, local: addrOf(from), remote: addrOf(addr), done: make(chan struct{})}
	server := &Conn{n: n, p: p, in: c2s, out: s2c, local: addrOf(addr), remote: addrOf(from), done: make(chan struct{})}
	client.peer, server.peer = server, client
	if n.conns[p] == nil {
		n.conns[p] = map[*Conn]struct{}{}
	}
	n.conns[p][client] = struct{}{}
	n.mu.Unlock()
	select {
	case l.accept <- server: // the backlog, as a kernel's: dialing never waits for Accept
		return client, nil
	default:
	}
	client.reset()
	return nil, &netError{err: fmt.Errorf("dial %s from %s: backlog full: %w", addr, from, syscall.ECONNREFUSED)}
}

// each runs f on the client end of every live connection of (from, to),
// and sets the pair's state with g for new ones (under n.mu).
func (n *Network) each(from, to string, g func(*linkState), f func(*Conn)) {
	n.mu.Lock()
	p := pair{from, to}
	if g != nil {
		g(n.link(p))
	}
	var cs []*Conn
	for c := range n.conns[p] {
		cs = append(cs, c)
	}
	n.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}

// Drop resets every connection from from to to now (both ends see
// ECONNRESET); new dials work.
func (n *Network) Drop(from, to string) { n.each(from, to, nil, (*Conn).reset) }

// Cut partitions from from to: every connection is reset and dials are
// refused until Heal.
func (n *Network) Cut(from, to string) {
	n.each(from, to, func(l *linkState) { l.cut = true }, (*Conn).reset)
}

// Heal ends a Cut, a Pause and a delay on (from, to).
func (n *Network) Heal(from, to string) {
	n.each(from, to, func(l *linkState) { *l = linkState{} }, func(c *Conn) {
		c.setHeld(false)
		c.setDelay(0)
	})
}

// Pause makes (from, to) a blackhole: nothing is delivered either way,
// on live connections and new ones, until Resume or Heal; then everything
// arrives, in order.
func (n *Network) Pause(from, to string) {
	n.each(from, to, func(l *linkState) { l.held = true }, func(c *Conn) { c.setHeld(true) })
}

// Resume ends a Pause.
func (n *Network) Resume(from, to string) {
	n.each(from, to, func(l *linkState) { l.held = false }, func(c *Conn) { c.setHeld(false) })
}

// Delay delivers what is written on (from, to) from now on d late, both
// ways.
func (n *Network) Delay(from, to string, d time.Duration) {
	n.each(from, to, func(l *linkState) { l.delay = d }, func(c *Conn) { c.setDelay(d) })
}

// Strand cuts the dialing side of every connection of (from, to) loose:
// it sees a reset at once and dials again, while what it had written and
// the listener had not yet read is delivered after the given delay, then
// EOF. What the listener writes back is lost. With a delay longer than
// the client's reconnection, the listener reads the old connection's
// bytes after the new one's: a reorder across reconnections.
func (n *Network) Strand(from, to string, after time.Duration) {
	n.each(from, to, nil, func(c *Conn) { c.strand(after) })
}

// ResetTo resets every connection to the listener at to, from every
// endpoint: what a crashed process's sockets see.
func (n *Network) ResetTo(to string) {
	n.mu.Lock()
	var cs []*Conn
	for p, m := range n.conns {
		if p.to == to {
			for c := range m {
				cs = append(cs, c)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range cs {
		c.reset()
	}
}

// HealAll ends every fault on every pair.
func (n *Network) HealAll() {
	n.mu.Lock()
	var ps []pair
	for p := range n.links {
		ps = append(ps, p)
	}
	n.mu.Unlock()
	for _, p := range ps {
		n.Heal(p.from, p.to)
	}
}

// Close resets every connection and closes every listener.
func (n *Network) Close() {
	n.mu.Lock()
	var cs []*Conn
	for _, m := range n.conns {
		for c := range m {
			cs = append(cs, c)
		}
	}
	var ls []*Listener
	for _, l := range n.listeners {
		ls = append(ls, l)
	}
	n.mu.Unlock()
	for _, c := range cs {
		c.reset()
	}
	for _, l := range ls {
		_ = l.Close()
	}
}

func (n *Network) forget(c *Conn) {
	n.mu.Lock()
	delete(n.conns[c.p], c)
	n.mu.Unlock()
}

// backlog is how many dialed connections wait for Accept.
const backlog = 128

// Listener accepts the connections dialed to its address.
type Listener struct {
	n      *Network
	addr   string
	accept chan *Conn
	once   sync.Once
	done   chan struct{}
}

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, &netError{err: errors.New("listener closed")}
	}
}

// Close unregisters the listener; connections it accepted stay.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.n.mu.Lock()
		if l.n.listeners[l.addr] == l {
			delete(l.n.listeners, l.addr)
		}
		l.n.mu.Unlock()
	})
	return nil
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return addrOf(l.addr) }

type addr string

func (a addr) Network() string { return "faultnet" }
func (a addr) String() string  { return string(a) }

func addrOf(s string) net.Addr { return addr(s) }
