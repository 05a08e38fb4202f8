package e2e

// The process-level durability test of issue 3: a workload writes, renames
// and deletes files on a replicated volume while the harness SIGKILLs a
// replica, then the primary, at random moments; a new primary recovers the
// volume on a fresh mount point, and every acknowledged change must be
// there. durLedger says what "acknowledged" means.

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flagDurSeed   = flag.Uint64("durability.seed", 0, "seed of the durability test's workload and kill schedule (0: from the clock; printed)")
	flagDurRounds = flag.Int("durability.rounds", 5, "crash rounds of the durability test (a replica and the primary killed in each)")
)

// TestDurability: in each round a workload of 4 writers creates files
// (write, close), publishes some by renaming them into new/ and deletes
// some, while the harness SIGKILLs one replica after a random number of
// acknowledged closes and the primary after a random number more. The
// replica restarts, a new primary recovers the volume on a fresh mount
// point, and the ledger is checked: every file whose close() returned 0 is
// there with the same content and inode number, every rename that returned
// 0 shows its new name only, and nothing deleted before the last
// acknowledged change reappears.
func TestDurability(t *testing.T) {
	requireCluster(t)
	seed := *flagDurSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("durability seed %d (rerun with -durability.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now()
	// Replicas compact their files from 1 MiB on (64 MiB by default), so
	// that kills land before, during and after rewrites of the file too.
	c := newClusterWith(t, 3, func(int) []string { return []string{"--compact-min-size", "1MiB"} })
	const vol = "durability"
	p := c.startPrimary(vol, "p0", "--flush-timeout", "20s")
	for _, d := range []string{"spool", "new"} {
		if err := os.Mkdir(p.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	led := &durLedger{files: map[string]*tracked{}}
	for round := 1; round <= *flagDurRounds && !t.Failed(); round++ {
		p = crashRound(t, c, p, led, round, rng)
		res := led.verify(p.dir)
		t.Logf("round %d: closes acknowledged %d (files present %d), lost %d, corrupted %d, renames broken %d, deletions undone %d, unexpected names %d",
			round, led.ackCount(), led.acked, res.lost, res.corrupted, res.renames, res.resurrected, res.unexpected)
		for _, e := range res.errors {
			t.Error(e)
		}
	}
	waitConverged(t, c, vol)
	if n := c.compactions(vol); n == 0 {
		t.Error("no replica compacted its file: the test did not exercise compaction")
	} else {
		t.Logf("compactions by the replicas running now: %d", n)
	}
	fmt.Printf("durability (seed %d, %d rounds, %v): files acknowledged %d, lost %d, corrupted %d\n",
		seed, *flagDurRounds, time.Since(start).Round(time.Millisecond), led.ackCount(), led.lostTotal, led.corruptedTotal)
	p.stop(t)
	if d := time.Since(start); d > 2*time.Minute {
		// Not a failure: CI machines are shared; the rounds bound the work.
		t.Logf("the durability test took %v, more than the usual 2 minutes", d)
	}
}

// crashRound runs the workload on p, kills a replica and then p at random
// moments (counted in acknowledged closes), restarts the replica and
// returns the new primary.
func crashRound(t *testing.T, c *cluster, p *primary, led *durLedger, round int, rng *rand.Rand) *primary {
	t.Helper()
	victim := rng.IntN(len(c.reps))
	base := led.ackCount()
	killRep := base + 10 + rng.IntN(150)
	killPrim := killRep + 10 + rng.IntN(500)
	pause := time.Duration(rng.IntN(20)) * time.Millisecond
	t.Logf("round %d: kill replica %d after %d acknowledged closes, the primary after %d (+%v)",
		round, victim+1, killRep-base, killPrim-base, pause)
	w := startWorkload(p.dir, led, round, 4, rng.Uint64())
	waitAcks(t, led, w, killRep)
	c.kill(victim)
	waitAcks(t, led, w, killPrim)
	time.Sleep(pause) // lands the kill inside some operation
	w.crashing.Store(true)
	p.crash()
	w.wait(t)
	c.start(victim)
	return c.startPrimary("durability", fmt.Sprintf("p%d", round))
}

// waitAcks waits until the ledger counts n acknowledged closes.
func waitAcks(t *testing.T, led *durLedger, w *workload, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for led.ackCount() < n {
		if time.Now().After(deadline) || w.allDone() {
			t.Fatalf("waiting for %d acknowledged closes: have %d (workload errors: %v)", n, led.ackCount(), w.errs())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitConverged waits until the three replicas hold the volume at the same
// lsn (a replica that was down or full caught up from the primary) and
// returns it; 0, with the test marked failed, if they do not within 20s.
func waitConverged(t *testing.T, c *cluster, vol string) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := c.lsns(vol)
		if l[0] > 0 && l[0] == l[1] && l[1] == l[2] {
			return l[0]
		}
		if time.Now().After(deadline) {
			t.Errorf("replicas did not converge within 20s: lsns %v", l)
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fileState is what the ledger knows of one file.
type fileState int

const (
	// present: its close (and rename, if any) returned 0; it is at name.
	present fileState = iota
	// maybe: an operation on it failed or never answered (the primary
	// died): it is at one of names, or gone; its content is hash if known.
	maybe
	// deleted: unlink returned 0 at clock delEnd.
	deleted
)

// tracked is one file of the workload.
type tracked struct {
	state     fileState
	name      string   // present, deleted
	names     []string // maybe
	hash      [32]byte
	hashKnown bool // close returned 0, or recovery showed it
	ino       uint64
	delEnd    uint64
}

// durLedger records what the filesystem acknowledged. clock orders the
// operations of all writers: a change is covered by a later acknowledged
// close or rename when it returned (its end tick) before that call
// started (its start tick) — DESIGN.md's promise covers "every change to
// the volume made before it" for a close that ships content and for a
// rename; every close here ships content.
type durLedger struct {
	clock   atomic.Uint64
	mu      sync.Mutex
	files   map[string]*tracked // by the name it was created with
	acks    atomic.Int64        // closes that returned 0
	lastAck uint64              // start tick of the latest acknowledged close or rename

	acked                     int // files present at the last verify
	lostTotal, corruptedTotal int
}

func (l *durLedger) ackCount() int { return int(l.acks.Load()) }

func (l *durLedger) tick() uint64 { return l.clock.Add(1) }

func (l *durLedger) acknowledged(start uint64) {
	if start > l.lastAck {
		l.lastAck = start
	}
}

// verifyResult counts what recovery got wrong.
type verifyResult struct {
	lost, corrupted, renames, resurrected, unexpected int
	errors                                            []string
}

func (r *verifyResult) fail(kind *int, format string, args ...any) {
	*kind++
	if len(r.errors) < 20 {
		r.errors = append(r.errors, fmt.Sprintf(format, args...))
	}
}

// verify checks the recovered volume at dir against the ledger, then
// settles what was uncertain to what recovery shows (the new primary made
// a quorum hold it before serving).
func (l *durLedger) verify(dir string) verifyResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r verifyResult
	seen := map[string]bool{}
	l.acked = 0
	for _, id := range sortedKeys(l.files) {
		f := l.files[id]
		switch f.state {
		case present:
			l.acked++
			l.checkPresent(dir, id, f, &r)
			seen[f.name] = true
		case deleted:
			if l.checkDeleted(dir, id, f, &r) {
				seen[f.name] = true
			}
		case maybe:
			if name := l.settleMaybe(dir, id, f, &r); name != "" {
				seen[name] = true
			}
		}
	}
	for _, d := range []string{"spool", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, d))
		if err != nil {
			r.fail(&r.unexpected, "readdir %s: %v", d, err)
			continue
		}
		for _, e := range ents {
			if name := d + "/" + e.Name(); !seen[name] {
				r.fail(&r.unexpected, "%s: in the recovered volume but never acknowledged or attempted", name)
			}
		}
	}
	l.lostTotal += r.lost
	l.corruptedTotal += r.corrupted + r.renames + r.resurrected + r.unexpected
	return r
}

func (l *durLedger) checkPresent(dir, id string, f *tracked, r *verifyResult) {
	hash, ino, err := readFile(filepath.Join(dir, f.name))
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.fail(&r.lost, "LOST %s (created as %s, inode %d): close returned 0 but it is gone", f.name, id, f.ino)
		return
	case err != nil:
		r.fail(&r.corrupted, "%s: %v", f.name, err)
		return
	case hash != f.hash:
		r.fail(&r.corrupted, "CORRUPTED %s: content differs from what close acknowledged", f.name)
	case ino != f.ino:
		r.fail(&r.corrupted, "CORRUPTED %s: inode %d, acknowledged as %d", f.name, ino, f.ino)
	}
	if f.name != id && exists(filepath.Join(dir, id)) {
		r.fail(&r.renames, "RENAME UNDONE: %s was renamed to %s (returned 0) but the old name is back", id, f.name)
	}
}

// checkDeleted says whether the deleted file is (legitimately) there.
func (l *durLedger) checkDeleted(dir, id string, f *tracked, r *verifyResult) bool {
	hash, _, err := readFile(filepath.Join(dir, f.name))
	if err != nil {
		return false
	}
	if f.delEnd < l.lastAck {
		r.fail(&r.resurrected, "DELETION UNDONE: %s was unlinked before a later acknowledged change but is back", f.name)
		return true
	}
	if f.hashKnown && hash != f.hash {
		r.fail(&r.corrupted, "CORRUPTED %s (deleted, not yet covered): content differs", f.name)
	}
	f.state = present // the unlink was not durable yet: the file lives on
	return true
}

// settleMaybe checks a file whose last operation got no answer and settles
// it; it returns the name it is found under ("" if gone).
func (l *durLedger) settleMaybe(dir, id string, f *tracked, r *verifyResult) string {
	found := ""
	for _, n := range f.names {
		if !exists(filepath.Join(dir, n)) {
			continue
		}
		if found != "" {
			r.fail(&r.renames, "RENAME TORN: %s is under both %s and %s", id, found, n)
		}
		found = n
	}
	if found == "" {
		delete(l.files, id)
		return ""
	}
	hash, ino, err := readFile(filepath.Join(dir, found))
	if err != nil {
		r.fail(&r.corrupted, "%s: %v", found, err)
		return found
	}
	if f.hashKnown && (hash != f.hash || ino != f.ino) {
		r.fail(&r.corrupted, "CORRUPTED %s: acknowledged content or inode changed", found)
	}
	*f = tracked{state: present, name: found, hash: hash, hashKnown: true, ino: ino}
	return found
}

func readFile(path string) (hash [32]byte, ino uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return hash, 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return hash, 0, err
	}
	return sha256.Sum256(b), st.Ino, nil
}

func exists(path string) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil
}

// workload is the writers of one round.
type workload struct {
	// crashing is set just before the primary is killed: from then on an
	// error is the dead mount's (ENOTCONN; EIO from a writeback the abort
	// cut short; ENOENT once the mount is detached), not a wrong answer.
	crashing atomic.Bool
	wg       sync.WaitGroup
	done     atomic.Int32
	n        int32
	mu       sync.Mutex
	errList  []string
}

func (w *workload) allDone() bool { return w.done.Load() == w.n }

func (w *workload) errs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errList...)
}

func (w *workload) unexpected(format string, args ...any) {
	w.mu.Lock()
	w.errList = append(w.errList, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// wait waits for the writers to stop (they stop when the mount dies) and
// fails the test on errors other than the dead mount's.
func (w *workload) wait(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("writers still blocked 30s after the primary was killed")
	}
	for _, e := range w.errs() {
		t.Errorf("workload: %s", e)
	}
}

// startWorkload starts n writers on the mount at dir.
func startWorkload(dir string, led *durLedger, round, n int, seed uint64) *workload {
	w := &workload{n: int32(n)}
	for i := 0; i < n; i++ {
		wr := &writer{dir: dir, led: led, w: w, prefix: fmt.Sprintf("r%d-w%d", round, i), rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer w.done.Add(1)
			wr.run()
		}()
	}
	return w
}

// writer is one workload goroutine: it only touches the files it created.
type writer struct {
	dir    string
	led    *durLedger
	w      *workload
	prefix string
	rng    *rand.Rand
	mine   []string // ids of its present files not yet renamed or deleted
	seq    int
}

func (wr *writer) run() {
	for {
		var ok bool
		switch x := wr.rng.IntN(10); {
		case x < 2 && len(wr.mine) > 0:
			ok = wr.remove()
		case x < 5 && len(wr.mine) > 0:
			ok = wr.publish()
		default:
			ok = wr.create()
		}
		if !ok {
			return
		}
	}
}

// failed handles an operation's error and says whether the writer stops.
// The operation's outcome is unknown (the ledger says maybe) unless it is
// a wrong answer, which fails the test.
func (wr *writer) failed(op, name string, err error) bool {
	if wr.w.crashing.Load() {
		return true
	}
	// Anything else is a wrong answer, EINTR too: an interrupted close,
	// fsync or rename waits for its true outcome (fsactor's waitDurable).
	wr.w.unexpected("%s %s: %v", op, name, err)
	return true
}

// create writes a new file and closes it; it returns false to stop.
func (wr *writer) create() bool {
	wr.seq++
	id := fmt.Sprintf("spool/%s-%05d", wr.prefix, wr.seq)
	// At least one byte: the close then ships the content, so it covers
	// every change made before it; a clean close covers only the file's
	// own last record (docs/architecture.md, "What close waits for").
	data := make([]byte, 1+wr.rng.IntN(48<<10))
	for i := range data {
		data[i] = byte(wr.rng.Uint32())
	}
	f := &tracked{state: maybe, names: []string{id}}
	wr.led.mu.Lock()
	wr.led.files[id] = f
	wr.led.mu.Unlock()
	fd, err := unix.Open(filepath.Join(wr.dir, id), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return !wr.failed("create", id, err)
	}
	ino, err := writeAll(fd, data)
	if err != nil {
		unix.Close(fd)
		return !wr.failed("write", id, err)
	}
	start := wr.led.tick()
	if err := unix.Close(fd); err != nil {
		return !wr.failed("close", id, err)
	}
	wr.led.mu.Lock()
	*f = tracked{state: present, name: id, hash: sha256.Sum256(data), hashKnown: true, ino: ino}
	wr.led.acknowledged(start)
	wr.led.mu.Unlock()
	wr.led.acks.Add(1)
	wr.mine = append(wr.mine, id)
	return true
}

func writeAll(fd int, data []byte) (uint64, error) {
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:min(len(data), off+8192)])
		if err != nil {
			return 0, err
		}
		off += n
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pick removes and returns a random file of wr.mine.
func (wr *writer) pick() string {
	i := wr.rng.IntN(len(wr.mine))
	id := wr.mine[i]
	wr.mine = append(wr.mine[:i], wr.mine[i+1:]...)
	return id
}

// publish renames a file into new/, as a spool publishes a message.
func (wr *writer) publish() bool {
	id := wr.pick()
	to := "new/" + strings.TrimPrefix(id, "spool/")
	start := wr.led.tick()
	err := unix.Rename(filepath.Join(wr.dir, id), filepath.Join(wr.dir, to))
	wr.led.mu.Lock()
	f := wr.led.files[id]
	if err == nil {
		f.name = to
		wr.led.acknowledged(start)
	} else {
		f.state, f.names = maybe, []string{id, to}
	}
	wr.led.mu.Unlock()
	if err != nil {
		return !wr.failed("rename", id, err)
	}
	return true
}

// remove unlinks a file.
func (wr *writer) remove() bool {
	id := wr.pick()
	wr.led.mu.Lock()
	f := wr.led.files[id]
	name := f.name
	wr.led.mu.Unlock()
	err := unix.Unlink(filepath.Join(wr.dir, name))
	end := wr.led.tick()
	wr.led.mu.Lock()
	if err == nil {
		f.state, f.delEnd = deleted, end
	} else {
		f.state, f.names = maybe, []string{name}
	}
	wr.led.mu.Unlock()
	if err != nil {
		return !wr.failed("unlink", name, err)
	}
	return true
}

// sortedKeys is for stable error output.
func sortedKeys(m map[string]*tracked) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
