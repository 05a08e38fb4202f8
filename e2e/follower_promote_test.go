package e2e

// The promotion test of issue 11: a follower takes the volume from a
// primary that is gone, without unmounting, while a process reads a file
// it opened on the follower before.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// promoteTimeout bounds `spoolfs promote`: closing the follower, a new
// term from the replicas, recovery and the switch to read-write.
const promoteTimeout = 60 * time.Second

// TestFollowerPromote: a primary runs the durability test's workload (4
// writers creating, publishing by rename and deleting files; only a
// close() or rename() that returned 0 counts) with a follower mounted;
// two processes hold files open on the follower, one of them deleted on
// the primary meanwhile. The primary goes away mid-workload and `spoolfs
// promote` turns the follower into the primary without unmounting: every
// acknowledged file is there with its content and inode number, writes
// succeed there, and both processes read their files to the end.
//
//   - kill: the primary is SIGKILLed (its machine died).
//   - stop: the primary is SIGSTOPped (its datacenter is cut off) and
//     continued after the promotion: it comes back fenced, its calls fail
//     and its later mutations answer EROFS; nothing it did after the
//     promotion reaches the new primary.
//
// A primary restarted as a new process after a kill is not fenced: a
// mount takes a new term (DESIGN.md, "Fencing") and would fence the
// promoted follower instead, so "the old primary comes back" is the stop
// case.
func TestFollowerPromote(t *testing.T) {
	for _, how := range []string{"kill", "stop"} {
		t.Run(how, func(t *testing.T) { testPromote(t, how) })
	}
}

func testPromote(t *testing.T, how string) {
	requireCluster(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	c := newCluster(t, 3)
	vol := "promote-" + how
	p := c.startPrimary(vol, "p1", "--flush-timeout", "5s")
	f := c.startFollower(vol, "f1")
	for _, d := range []string{"spool", "new", "held"} {
		if err := os.Mkdir(p.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keep, gone := patterned(3, 300<<10), patterned(5, 200<<10)
	writeFileSync(t, p.path("held/keep"), keep)
	writeFileSync(t, p.path("held/gone"), gone)
	testsupport.WaitFor(t, followerWait, "the follower to show held/", func() bool {
		return exists(f.path("held/keep")) && exists(f.path("held/gone"))
	})
	rKeep := startHolder(t, f.path("held/keep"))
	rGone := startHolder(t, f.path("held/gone"))
	if err := os.Remove(p.path("held/gone")); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, followerWait, "held/gone to be gone on the follower", func() bool { return !exists(f.path("held/gone")) })

	led := &durLedger{files: map[string]*tracked{}}
	w := startWorkload(p.dir, led, 1, 4, rng.Uint64())
	waitAcks(t, led, w, 100+rng.IntN(300))
	time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // lands inside some operation
	w.crashing.Store(true)
	if how == "kill" {
		p.crash()
		killed := time.Now()
		w.wait(t)
		t.Logf("writers stopped %v after the kill", time.Since(killed).Round(time.Millisecond))
	} else {
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
		t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
	}
	acked := led.ackCount()
	start := time.Now()
	promote := f.promote // spoolfs promote VOLUME --admin ADDR
	if how == "stop" {
		promote = f.promoteHTTP // no child while descriptors are open on the stopped mount
	}
	if out, err := promote(promoteTimeout); err != nil {
		t.Fatalf("promote %s: %v\n%s", vol, err, out)
	}
	t.Logf("promoted in %v after %d acknowledged closes", time.Since(start).Round(time.Millisecond), acked)

	after := patterned(7, 50<<10)
	writeFileSync(t, f.path("new/after-promote"), after)
	if err := os.Rename(f.path("new/after-promote"), f.path("held/after-promote")); err != nil {
		t.Fatalf("rename on the promoted follower: %v", err)
	}
	if how == "stop" {
		comesBackFenced(t, p, w, f)
	}
	res := led.verify(f.dir)
	t.Logf("ledger on the promoted follower: closes acknowledged %d (files present %d), lost %d, corrupted %d, renames broken %d, deletions undone %d, unexpected %d",
		led.ackCount(), led.acked, res.lost, res.corrupted, res.renames, res.resurrected, res.unexpected)
	for _, e := range res.errors {
		t.Error(e)
	}
	if got, err := os.ReadFile(f.path("held/after-promote")); err != nil || string(got) != string(after) {
		t.Errorf("held/after-promote on the promoted follower: %v (%d bytes)", err, len(got))
	}
	rKeep.finish(t, keep)
	rGone.finish(t, gone)
	stopped := time.Now()
	f.stop(t)
	t.Logf("the promoted follower stopped in %v", time.Since(stopped).Round(time.Millisecond))
	if how == "stop" {
		p.stop(t)
	}
}

// comesBackFenced continues the stopped old primary p: its workload's
// calls end (none of them wrong: the ledger judges what they
// acknowledged), it learns it was fenced, its mutations answer EROFS, and
// nothing it writes reaches the promoted follower f.
func comesBackFenced(t *testing.T, p *primary, w *workload, f *follower) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	w.wait(t)
	testsupport.WaitForErr(t, 20*time.Second, "the old primary to answer EROFS", func() error {
		err := unix.Mkdir(p.path("late-dir"), 0o755)
		if errors.Is(err, unix.EROFS) {
			return nil
		}
		if err == nil {
			return errors.New("mkdir on the old primary succeeded: it is not fenced")
		}
		return err
	})
	werr := os.WriteFile(p.path("late-file"), []byte("must never be seen"), 0o644)
	if werr == nil {
		t.Errorf("the old primary wrote and closed a file after the promotion")
	}
	for _, n := range []string{"late-dir", "late-file"} {
		if exists(f.path(n)) {
			t.Errorf("%s, made by the old primary after the promotion, is on the promoted follower", n)
		}
	}
	testsupport.WaitFor(t, waitDeadline, "the old primary to log that it turned read-only", func() bool {
		return strings.Contains(p.out.String(), "read-only")
	})
}

// holder is a process holding a file open on the follower: it has read
// its first 4 KiB and reads the rest when told to.
type holder struct {
	path   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	out    *testsupport.Buffer
}

// startHolder starts `sh` with path open on descriptor 3, and waits until
// it read the first 4 KiB.
func startHolder(t *testing.T, path string) *holder {
	t.Helper()
	h := &holder{path: path, out: &testsupport.Buffer{}}
	script := `exec 3<"$1" || exit 3
dd bs=4096 count=1 <&3 >/dev/null 2>&1 || exit 4
echo opened
read go || exit 5
sha256sum <&3`
	h.cmd = exec.Command("sh", "-c", script, "holder", path)
	h.cmd.Stderr = h.out
	stdout, err := h.cmd.StdoutPipe()
	if err == nil {
		h.stdin, err = h.cmd.StdinPipe()
	}
	if err == nil {
		err = h.cmd.Start()
	}
	if err != nil {
		t.Fatalf("holder of %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	})
	h.stdout = bufio.NewReader(stdout)
	line, err := readLineWithin(h.stdout, waitDeadline)
	if err != nil || line != "opened" {
		t.Fatalf("holder of %s: %q, %v (stderr %s)", path, line, err, h.out.String())
	}
	return h
}

// finish tells the holder to read the rest of its file and checks it
// read content[4096:].
func (h *holder) finish(t *testing.T, content []byte) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Errorf("holder of %s: %v", h.path, err)
		return
	}
	line, err := readLineWithin(h.stdout, 30*time.Second)
	sum := sha256.Sum256(content[4096:])
	want := hex.EncodeToString(sum[:])
	if err != nil || !strings.HasPrefix(line, want) {
		t.Errorf("the process holding %s open read %q (%v; stderr %q), want sha256 %s of the %d bytes after the first 4 KiB",
			h.path, line, err, h.out.String(), want, len(content)-4096)
	}
}

// readLineWithin reads one line from r, failing after d.
func readLineWithin(r *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case x := <-ch:
		return x.s, x.err
	case <-time.After(d):
		return "", fmt.Errorf("no line within %v", d)
	}
}
