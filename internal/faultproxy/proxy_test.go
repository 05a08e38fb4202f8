package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with itself until the connection ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return got, err
	}
	return got[:len(got)-1], nil
}

func TestPass(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "hello", 10*time.Second); err != nil || got != "hello" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
}

func TestBlackholeHoldsBytesAndHealDeliversThem(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	_, err := roundTrip(c, r, "held", 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blackholed round trip: %v, want a timeout", err)
	}
	if p.Conns() != 1 {
		t.Fatalf("Conns = %d during blackhole, want 1 (connections stay open)", p.Conns())
	}
	p.Heal()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after heal read %q, %v; want the held line", got, err)
	}
	if got, err := roundTrip(c, r, "after", 10*time.Second); err != nil || got != "after" {
		t.Fatalf("round trip after heal = %q, %v", got, err)
	}
}

func TestBlackholeFillsTheSendersBuffers(t *testing.T) {
	p := newProxy(t)
	c, _ := dial(t, p)
	p.Blackhole()
	// The echo server's replies are held, and so are our bytes: a writer
	// that never reads must eventually block, as across a partition.
	if err := c.SetWriteDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var err error
	for i := 0; i < 1<<12 && err == nil; i++ {
		_, err = c.Write(buf)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("writes into a blackhole ended with %v, want a write timeout", err)
	}
}

func TestResetClosesAndRefusesUntilHeal(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "x", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if _, err := roundTrip(c, r, "y", 10*time.Second); err == nil {
		t.Fatal("round trip on a reset connection succeeded")
	}
	// A connection made during a reset fails at the dial or at once after.
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), "z", 10*time.Second); err == nil {
			t.Fatal("round trip on a connection made during reset succeeded")
		}
	}
	p.Heal()
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "again", 10*time.Second); err != nil || got != "again" {
		t.Fatalf("round trip after heal = %q, %v", got, err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	p.Blackhole()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, r, "x", 10*time.Second); err == nil {
		t.Fatal("round trip after Close succeeded")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
