package e2e

// The client of the fault-injection test (faults_test.go): the test
// binary re-executed with faultClientEnv set, so that calls stuck on a
// hung mount block a process the test can abandon, never the test itself
// (a process that starts another closes its descriptors on exec, and a
// close on a hung mount would hang that exec too).
//
// It runs exim's spool pattern from N writers and a deliverer on one
// mount and reports on stdout, one tab-separated line per fact, what the
// filesystem acknowledged; the test keeps the ledger (faults_ledger_test.go).
// Times are CLOCK_MONOTONIC nanoseconds, comparable across processes.
//
//	C path t0          a create is attempted (before the call)
//	A path ino t0      path's content is acknowledged: fsync (started at t0) and close returned 0
//	r from to t0       a rename is attempted (before the call, at t0)
//	R from to t0       the rename returned 0 (started at t0)
//	u path t0          an unlink is attempted (before the call, at t0)
//	U path t1          the unlink returned 0 (returned at t1)
//	E op path errno t0 t1   a call failed
//	L op path errno t0 t1   a call took longer than the slow bound
//	P op path t0 t1    a call still in flight when the client stopped at t1
//	X detail           the deliverer read content that differs from what was written
//	S ops maxns delivered   the summary, last

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// faultClientEnv carries a faultClientConfig (JSON) to the child.
const faultClientEnv = "SPOOLFS_E2E_FAULT_CLIENT"

// faultClientConfig is what one client process does.
type faultClientConfig struct {
	Dir     string        // the mount's root; messages go to Dir/input
	Prefix  string        // of every message id (unique per client)
	Writers int           // writer goroutines
	Slow    time.Duration // calls longer than this are reported (L)
	Grace   time.Duration // how long in-flight calls may finish once told to stop
	Dead    []string      // prefixes of clients whose primary was killed: their leftovers are tidied
}

// Sizes of exim's files in the workload, and how it is kept in balance:
// deliverers share the messages by id, and writers wait while more than
// maxBacklog messages are published and not yet delivered (a spool that
// only grows would fill the replicas' disks).
const (
	deliverers = 2
	maxBacklog = 200

	dataSize  = 16 << 10 // the -D file, written in 4 KiB writes
	dataChunk = 4 << 10
	hdrSize   = 1 << 10 // the -H file
)

// msgContent is the deterministic content of a message file: the same
// bytes for the writer, the deliverer and the ledger.
func msgContent(name string, size int) []byte {
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(h.Sum64(), 7))
	b := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// contentOf says what a message file (by its path relative to the mount,
// under any of its names) holds.
func contentOf(rel string) []byte {
	base := filepath.Base(rel)
	switch {
	case strings.HasSuffix(base, "-D"):
		return msgContent(base, dataSize)
	case strings.HasSuffix(base, "-H.tmp"):
		return msgContent(strings.TrimSuffix(base, ".tmp"), hdrSize)
	case strings.HasSuffix(base, "-H"):
		return msgContent(base, hdrSize)
	}
	return nil
}

func contentHash(rel string) [32]byte { return sha256.Sum256(contentOf(rel)) }

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// fclient is the state of one client process.
type fclient struct {
	cfg     faultClientConfig
	outMu   sync.Mutex
	out     io.Writer
	stop    chan struct{}
	dead    atomic.Bool // the mount answered ENOTCONN: nothing more to do
	ops     atomic.Int64
	maxLat  atomic.Int64
	deliv   atomic.Int64
	backlog atomic.Int64 // published minus delivered
	flyMu   sync.Mutex
	inFly   map[int64]flight
	flyNext int64
}

type flight struct {
	op, path string
	t0       int64
}

// faultClientMain runs in the child process instead of the tests.
func faultClientMain(cfgJSON string) {
	c := &fclient{out: os.Stdout, stop: make(chan struct{}), inFly: map[int64]flight{}}
	if err := json.Unmarshal([]byte(cfgJSON), &c.cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fault client:", err)
		os.Exit(2)
	}
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(c.stop) }()
	var wg sync.WaitGroup
	for i := 0; i < c.cfg.Writers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.writer(i) }()
	}
	for k := 0; k < deliverers; k++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.deliverer(k) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	<-c.stop
	select {
	case <-done:
	case <-time.After(c.cfg.Grace):
	}
	c.pending()
	c.emit("S", c.ops.Load(), c.maxLat.Load(), c.deliv.Load())
	os.Exit(0)
}

// emit writes one line; a write is one system call, so the test reads
// every line a client wrote before it died.
func (c *fclient) emit(kind string, fields ...any) {
	var b strings.Builder
	b.WriteString(kind)
	for _, f := range fields {
		fmt.Fprintf(&b, "\t%v", f)
	}
	b.WriteByte('\n')
	c.outMu.Lock()
	_, _ = io.WriteString(c.out, b.String())
	c.outMu.Unlock()
}

func (c *fclient) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return c.dead.Load()
	}
}

// call runs one system call, timing it and reporting failures and slow
// calls; t0 is its start.
func (c *fclient) call(op, path string, f func() error) (t0 int64, err error) {
	t0 = monoNow()
	c.flyMu.Lock()
	id := c.flyNext
	c.flyNext++
	c.inFly[id] = flight{op, path, t0}
	c.flyMu.Unlock()
	err = f()
	t1 := monoNow()
	c.flyMu.Lock()
	delete(c.inFly, id)
	c.flyMu.Unlock()
	c.ops.Add(1)
	lat := t1 - t0
	for m := c.maxLat.Load(); lat > m && !c.maxLat.CompareAndSwap(m, lat); m = c.maxLat.Load() {
	}
	if err != nil {
		c.emit("E", op, path, errName(err), t0, t1)
		switch errnoOf(err) {
		case unix.ENOTCONN, unix.ECONNABORTED, unix.EROFS: // killed, aborted, fenced: for good
			c.dead.Store(true)
		}
	}
	if time.Duration(lat) > c.cfg.Slow {
		c.emit("L", op, path, errName(err), t0, t1)
	}
	return t0, err
}

// pending reports the calls still in flight.
func (c *fclient) pending() {
	c.flyMu.Lock()
	defer c.flyMu.Unlock()
	now := monoNow()
	for _, f := range c.inFly {
		c.emit("P", f.op, f.path, f.t0, now)
	}
}

func (c *fclient) abs(rel string) string { return filepath.Join(c.cfg.Dir, rel) }

// writer writes messages until told to stop or the mount is gone.
func (c *fclient) writer(i int) {
	for seq := 1; !c.stopped(); seq++ {
		for c.backlog.Load() > maxBacklog && !c.stopped() {
			time.Sleep(5 * time.Millisecond)
		}
		id := fmt.Sprintf("%s-w%d-%06d", c.cfg.Prefix, i, seq)
		if !c.message(id) {
			time.Sleep(50 * time.Millisecond) // a fault: try the next message
		}
	}
}

// message spools one message as exim does: -D written and fsynced, then
// -H.tmp written and fsynced and renamed to -H, the commit point. A
// message that fails before its rename is removed again, as exim does
// (else the spool would fill with them while the quorum is lost); one
// whose rename failed may be published or not and is left to the tidying
// of a later client (tidy).
func (c *fclient) message(id string) bool {
	d := "input/" + id + "-D"
	var made []string
	defer func() { c.remove(made) }()
	ok := c.writeFile(d, dataChunk, &made)
	tmp, h := "input/"+id+"-H.tmp", "input/"+id+"-H"
	if ok {
		ok = c.writeFile(tmp, hdrSize, &made)
	}
	if !ok {
		return false
	}
	made = nil
	c.emit("r", tmp, h, monoNow())
	t0, err := c.call("rename", tmp, func() error { return unix.Rename(c.abs(tmp), c.abs(h)) })
	if err != nil {
		return false
	}
	c.emit("R", tmp, h, t0)
	c.backlog.Add(1)
	return true
}

// remove unlinks the files of a message that failed, unless the mount is
// gone or read-only.
func (c *fclient) remove(files []string) {
	for _, rel := range files {
		if c.dead.Load() || !c.unlink(rel) {
			return
		}
	}
}

// unlink removes rel, reporting the attempt and the result.
func (c *fclient) unlink(rel string) bool {
	c.emit("u", rel, monoNow())
	if _, err := c.call("unlink", rel, func() error { return unix.Unlink(c.abs(rel)) }); err != nil {
		return false
	}
	c.emit("U", rel, monoNow())
	return true
}

// writeFile creates rel (adding it to made), writes its content in
// chunks, fsyncs and closes it, and reports it acknowledged when fsync
// and close returned 0.
func (c *fclient) writeFile(rel string, chunk int, made *[]string) bool {
	data := contentOf(rel)
	c.emit("C", rel, monoNow())
	var fd int
	_, err := c.call("create", rel, func() (err error) {
		fd, err = unix.Open(c.abs(rel), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o640)
		return err
	})
	if err != nil {
		return false
	}
	*made = append(*made, rel)
	ok := c.writeChunks(fd, rel, data, chunk)
	var t0 int64
	var st unix.Stat_t
	if ok {
		t0, err = c.call("fsync", rel, func() error { return unix.Fsync(fd) })
		ok = err == nil && unix.Fstat(fd, &st) == nil
	}
	if _, err := c.call("close", rel, func() error { return unix.Close(fd) }); err != nil {
		return false
	}
	if ok {
		c.emit("A", rel, st.Ino, t0)
	}
	return ok
}

func (c *fclient) writeChunks(fd int, rel string, data []byte, chunk int) bool {
	for off := 0; off < len(data); off += chunk {
		part := data[off:min(len(data), off+chunk)]
		_, err := c.call("write", rel, func() error {
			for len(part) > 0 {
				n, err := unix.Write(fd, part)
				if err != nil {
					return err
				}
				part = part[n:]
			}
			return nil
		})
		if err != nil {
			return false
		}
	}
	return true
}

// deliverer k reads each published message (-H) of its share, checks
// both files and unlinks them, -D first.
func (c *fclient) deliverer(k int) {
	for !c.stopped() {
		names, err := c.readdir("input")
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		n := 0
		for _, name := range names {
			if strings.HasSuffix(name, "-H") && share(name) == k && !c.stopped() {
				c.deliver(strings.TrimSuffix(name, "-H"))
				n++
			}
		}
		c.tidy(k, names)
		if n == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// tidy removes what writers of dead clients (cfg.Dead: their primary
// was killed; a fenced one may still be writing) left of messages never
// published: a -D or -H.tmp without a -H. Deliverer k tidies its share.
func (c *fclient) tidy(k int, names []string) {
	listed, dead := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		listed[n] = true
	}
	for _, p := range c.cfg.Dead {
		dead[p] = true
	}
	for _, n := range names {
		id, ok := strings.CutSuffix(n, "-D")
		if !ok {
			id, ok = strings.CutSuffix(n, "-H.tmp")
		}
		prefix, _, _ := strings.Cut(id, "-w")
		if !ok || listed[id+"-H"] || !dead[prefix] || share(id+"-H") != k || c.stopped() {
			continue
		}
		if !c.unlink("input/" + n) {
			return
		}
	}
}

// share is the deliverer a message belongs to.
func share(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % deliverers)
}

func (c *fclient) readdir(rel string) ([]string, error) {
	var names []string
	_, err := c.call("readdir", rel, func() error {
		ents, err := os.ReadDir(c.abs(rel))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return err
	})
	sort.Strings(names)
	return names, err
}

// deliver reads and removes one message; base is input/ID.
func (c *fclient) deliver(id string) {
	h, d := "input/"+id+"-H", "input/"+id+"-D"
	if !c.check(h) || !c.check(d) {
		return
	}
	for _, rel := range []string{d, h} {
		if !c.unlink(rel) {
			return
		}
	}
	c.deliv.Add(1)
	if strings.HasPrefix(id, c.cfg.Prefix+"-w") {
		c.backlog.Add(-1)
	}
}

// orphan removes a published -H whose -D is gone, as exim does: a
// recovery may show the -D's unlink and not the -H's, made after it.
func (c *fclient) orphan(h string) { c.unlink(h) }

// check reads rel (open, read, close) and compares it with what was
// written; false if it could not be read.
func (c *fclient) check(rel string) bool {
	var fd int
	open := func() (err error) {
		fd, err = unix.Open(c.abs(rel), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	}
	// A -H listed and then not found: once more after a pause, as the
	// kernel may learn of a name a failed rename left (fsactor's
	// failedWaitNotes) just after readdir saw it. A second ENOENT is
	// reported and judged by the ledger.
	_, err := c.call("open", rel, func() error {
		if err := open(); errnoOf(err) != unix.ENOENT || !strings.HasSuffix(rel, "-H") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		return open()
	})
	if err != nil {
		if errnoOf(err) == unix.ENOENT && strings.HasSuffix(rel, "-D") {
			c.orphan(strings.TrimSuffix(rel, "-D") + "-H")
		}
		return false
	}
	buf := make([]byte, dataSize+1)
	var n int
	_, err = c.call("read", rel, func() (err error) {
		for n < len(buf) {
			m, err := unix.Read(fd, buf[n:])
			if err != nil || m == 0 {
				return err
			}
			n += m
		}
		return nil
	})
	_, cerr := c.call("close", rel, func() error { return unix.Close(fd) })
	if err != nil || cerr != nil {
		return false
	}
	if !bytes.Equal(buf[:n], contentOf(rel)) {
		c.emit("X", fmt.Sprintf("%s: read %d bytes that differ from the %d written", rel, n, len(contentOf(rel))))
		return false
	}
	return true
}
