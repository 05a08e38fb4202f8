package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// serve accepts one connection on a new listener and returns it.
func dialPair(t *testing.T, n *Network, from, to string) (client, server net.Conn) {
	t.Helper()
	l, err := n.Listen(to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err = n.Dial(context.Background(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	return client, <-accepted
}

func mustRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
}

func TestEchoAndClose(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	_, _ = c.Write([]byte("hello"))
	mustRead(t, s, "hello")
	_, _ = s.Write([]byte("back"))
	mustRead(t, c, "back")
	_, _ = c.Write([]byte("last"))
	_ = c.Close()
	mustRead(t, s, "last")
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestDropAndCut(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	n.Cut("a", "b")
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read after cut: %v", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("client write after cut succeeded")
	}
	if _, err := n.Dial(context.Background(), "a", "b"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial during cut: %v", err)
	}
	if _, err := n.Dial(context.Background(), "other", "b"); err != nil {
		t.Fatalf("another endpoint's dial: %v", err)
	}
	n.Heal("a", "b")
	if _, err := n.Dial(context.Background(), "a", "b"); err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
}

func TestPauseDelaysEverything(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	n.Pause("a", "b")
	_, _ = c.Write([]byte("held")) // queued before Write returns
	// Not a look after a sleep: a read whose deadline has passed takes
	// what is deliverable now, and the write is already queued.
	_ = s.SetReadDeadline(time.Now())
	b := make([]byte, 4)
	if k, err := s.Read(b); k > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q (%v) through a paused link, want a timeout", b[:k], err)
	}
	_ = s.SetReadDeadline(time.Time{})
	n.Resume("a", "b")
	mustRead(t, s, "held")
}

func TestStrandDeliversLate(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	_, _ = c.Write([]byte("old"))
	n.Strand("a", "b", 10*time.Millisecond)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("stranded client still reads")
	}
	mustRead(t, s, "old")
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("stranded server end after the data: %v, want EOF", err)
	}
}

func TestDelay(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	n.Delay("a", "b", 30*time.Millisecond)
	start := time.Now()
	_, _ = c.Write([]byte("x"))
	mustRead(t, s, "x")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("delivered after %v, want at least 30ms", d)
	}
}

func TestReadDeadlineOnPausedConn(t *testing.T) {
	n := New()
	defer n.Close()
	c, s := dialPair(t, n, "a", "b")
	n.Pause("a", "b")
	_, _ = c.Write([]byte("x"))
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := s.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
}
