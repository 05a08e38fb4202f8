package node

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// startDetached starts `spoolfs mount --local --access-log VOL DIR` in a
// session of its own (no controlling terminal), with stderr going to
// stderr; t.Cleanup kills it if it still runs.
func startDetached(t *testing.T, bin, vol, dir string, stderr *os.File) *proc {
	t.Helper()
	p := &proc{stderr: &testsupport.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "mount", "--local", "--access-log", vol, dir)
	p.cmd.Stderr = stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting spoolfs: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stopsWithZero sends sig and checks spoolfs exits 0 and unmounted.
func stopsWithZero(t *testing.T, p *proc, dir string, sig syscall.Signal) {
	t.Helper()
	p.signal(t, sig)
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		t.Fatalf("spoolfs still running %v after %v", exitTimeout, sig)
	}
	if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != 0 {
		t.Fatalf("after %v: %v, want exit status 0", sig, p.cmd.ProcessState)
	}
	if at := fuseMountsAt(t, dir); len(at) != 0 {
		t.Fatalf("still mounted after spoolfs exited: %+v", at)
	}
}

// TestClosedLogPipe: spoolfs's stderr is a pipe whose reader goes away
// (`make run | tee`, then Ctrl-C). Log lines fail from then on, with
// EPIPE, and spoolfs keeps serving; SIGINT still unmounts cleanly and
// exits 0 (it used to die of SIGPIPE, status 141, and leave the mount
// "Transport endpoint is not connected").
func TestClosedLogPipe(t *testing.T) {
	bin := requireMount(t)
	dir := newMountDir(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := startDetached(t, bin, "vol-pipe", dir, w)
	w.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.Contains(sc.Text(), "serving") {
	}
	r.Close() // the reader is gone: every log line now fails
	waitMounted(t, p, dir)
	for i := range 20 {
		writeRead(t, dir, "m"+string(rune('a'+i))) // an access-log line per op
	}
	if p.exited() {
		t.Fatalf("spoolfs died once its log pipe closed: %v", p.cmd.ProcessState)
	}
	stopsWithZero(t, p, dir, syscall.SIGINT)
}

// TestSIGHUPServes: without a controlling terminal, SIGHUP does not stop
// spoolfs (it used to kill it and leave the mount broken).
func TestSIGHUPServes(t *testing.T) {
	bin := requireMount(t)
	dir := newMountDir(t)
	p := startDetached(t, bin, "vol-hup", dir, nil)
	waitMounted(t, p, dir)
	writeRead(t, dir, "before")
	p.signal(t, syscall.SIGHUP)
	writeRead(t, dir, "after")
	// A SIGHUP that killed spoolfs would show in the exit status below:
	// the SIGTERM comes after it.
	stopsWithZero(t, p, dir, syscall.SIGTERM)
}
