package e2e

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

var (
	flagChurn = flag.Duration("e2e.churn", time.Minute,
		"how long TestChurn churns (make test-churn: 10m)")
	// Files up to 2 GiB sparse: a sparse file costs what was written
	// (docs/failures.md, 3b).
	flagChurnSparse = flag.Int64("e2e.churn.sparse", 2<<30,
		"largest offset of TestChurn's sparse writes and truncates")
	flagChurnDense = flag.Int64("e2e.churn.dense", 1<<20,
		"largest offset of TestChurn's ordinary writes")
)

// Bounds of TestChurn.
const (
	churnWorkers   = 4
	churnFiles     = 48                // names per worker
	churnLogBytes  = 16 << 20          // the primary's --log-bytes: small, to force resyncs
	churnFlush     = 10 * time.Second  // --flush-timeout
	churnMargin    = 2 * time.Second   // a close may take the flush timeout plus this
	churnMemSlack  = 256 << 20         // the memory bound: 2× live data plus this
	churnConverge  = 120 * time.Second // replicas back at the head after the churn
	churnResyncDur = 90 * time.Second  // one forced resync: install and catch-up
	churnBallast   = 64                // files of 1 MiB that stay: every install carries them
)

// TestChurn: fsstress-like churn on a replicated mount — 64 MiB of files
// that stay, and beside them workers writing, writing sparse (up to 2 GiB),
// truncating, renaming, unlinking — while one replica at a time is killed
// until the primary's log (--log-bytes 16MiB) no longer reaches it, then
// restarted: each forced resync must take exactly one install (no install
// loop, issue 9 finding 3), every close must be answered within the flush
// timeout plus 2 s, and each process's memory must stay within 2× the
// volume's live data plus 256 MiB: a replica's peak RSS (VmHWM of
// /proc/PID/status), the primary's anonymous RSS (RssAnon: its file
// contents live in memfds, which count as shared memory), sampled every
// 250 ms. Live data is the most content any replica reported storing.
// -e2e.churn=10m for the long form (make test-churn).
func TestChurn(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "churn"
	admin := testsupport.FreeAddr(t)
	p := c.startPrimary(vol, "p1", "--log-bytes", strconv.Itoa(churnLogBytes),
		"--flush-timeout", churnFlush.String(), "--admin", admin)
	mem := newMemWatch(c, p, vol)
	go mem.run()
	defer mem.stop()

	writeBallast(t, p.path("ballast"))
	st := &churnStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range churnWorkers {
		dir := p.path(fmt.Sprintf("w%d", w))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			churnWorker(dir, rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))), st, stop)
		}()
	}
	forced := forceResyncs(t, c, admin, vol, st, mem, time.Now().Add(*flagChurn))
	close(stop)
	wg.Wait()

	links := waitChurnConverged(t, admin, vol)
	mem.stop()
	t.Logf("churn %v: %d ops, %d MiB written, forced resyncs %v; closes: max %v (%s); live data max %d MiB",
		*flagChurn, st.ops.Load(), st.written.Load()>>20, forced, st.maxClose(), st.maxCloseOp(), mem.live()>>20)
	mem.report(t)
	for i, l := range links {
		t.Logf("replica %d: installs %d, resyncs %d, overflows %d, repeats %d", i+1, l.Installs, l.Resyncs, l.Overflows, l.Repeats)
		if l.Repeats != 0 || l.Overflows != 0 || l.Installs != forced[i] {
			t.Errorf("replica %d: %d forced resyncs took %d installs (%d outrun, %d repeated)",
				i+1, forced[i], l.Installs, l.Overflows, l.Repeats)
		}
	}
	if d := st.maxClose(); d > churnFlush+churnMargin {
		t.Errorf("a close took %v (%s): more than the flush timeout %v plus %v", d, st.maxCloseOp(), churnFlush, churnMargin)
	}
	if errs := st.errors(); len(errs) > 0 {
		t.Errorf("%d calls failed, e.g.:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	mem.check(t)
}

// writeBallast writes the files that stay through the churn, so that the
// volume has live data to install and to measure memory against.
func writeBallast(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	for i := range churnBallast {
		for j := range data {
			data[j] = byte(i + j%251 + 1)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("b%03d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// churnStats is what the workers count.
type churnStats struct {
	ops, written atomic.Int64
	mu           sync.Mutex
	closeMax     time.Duration
	closeOp      string
	errs         []string
}

func (s *churnStats) noteClose(d time.Duration, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > s.closeMax {
		s.closeMax, s.closeOp = d, what
	}
}

func (s *churnStats) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err.Error())
}

func (s *churnStats) maxClose() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeMax
}

func (s *churnStats) maxCloseOp() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeOp
}

func (s *churnStats) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs
}

// churnWorker runs random operations on the files of dir until stop.
func churnWorker(dir string, r *rand.Rand, st *churnStats, stop <-chan struct{}) {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(r.IntN(255) + 1)
	}
	name := func() string { return filepath.Join(dir, fmt.Sprintf("f%02d", r.IntN(churnFiles))) }
	for {
		select {
		case <-stop:
			return
		default:
		}
		var err error
		switch op := r.IntN(10); {
		case op < 4:
			err = churnWrite(st, name(), buf[:1+r.IntN(len(buf))], r.Int64N(*flagChurnDense), r.IntN(8) == 0)
		case op == 4:
			err = churnWrite(st, name(), buf[:1+r.IntN(4<<10)], r.Int64N(*flagChurnSparse), false)
		case op == 5:
			err = os.Truncate(name(), r.Int64N(*flagChurnSparse))
		case op < 8:
			err = timed(st, "rename", func() error { return os.Rename(name(), name()) })
		case op == 8:
			err = os.Remove(name())
		default:
			err = churnRead(st, name(), buf)
		}
		st.ops.Add(1)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			st.fail(err)
		}
	}
}

// churnWrite writes data at off into the file at path (created if
// missing), fsyncs it if asked, and closes it, timing the fsync and close.
func churnWrite(st *churnStats, path string, data []byte, off int64, fsync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, off)
	if err == nil {
		st.written.Add(int64(len(data)))
	}
	if fsync && err == nil {
		err = timed(st, "fsync", f.Sync)
	}
	if cerr := timed(st, "close", f.Close); err == nil {
		err = cerr
	}
	return err
}

func churnRead(st *churnStats, path string, buf []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if _, err = f.Read(buf); errors.Is(err, io.EOF) {
		err = nil
	}
	if cerr := timed(st, "close", f.Close); err == nil {
		err = cerr
	}
	return err
}

// timed runs a call that waits for replicas and notes how long it took.
func timed(st *churnStats, what string, call func() error) error {
	start := time.Now()
	err := call()
	st.noteClose(time.Since(start), what)
	return err
}

// forceResyncs kills one replica at a time until the primary's log no
// longer reaches it, restarts it and waits until its install
// and catch-up are done; until the deadline. It returns the forced
// resyncs per replica.
func forceResyncs(t *testing.T, c *cluster, admin, vol string, st *churnStats, mem *memWatch, until time.Time) []int {
	forced := make([]int, len(c.reps))
	for i := 0; time.Now().Before(until); i = (i + 1) % len(c.reps) {
		mem.sampleOne(i) // its peak before it goes
		mem.setPid(i, 0)
		c.kill(i)
		waitLogPassed(t, admin, vol, i)
		c.start(i)
		mem.setPid(i, c.reps[i].cmd.Process.Pid)
		forced[i]++
		deadline := time.Now().Add(churnResyncDur)
		for {
			l, ok := linkStatus(admin, vol, i)
			if ok && l.Connected && !l.Installing && l.Installs >= forced[i] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: no install and catch-up within %v of its restart: %+v", i+1, churnResyncDur, l)
			}
			time.Sleep(50 * time.Millisecond)
		}
		pause := time.After(3 * time.Second)
		select {
		case <-pause:
		case <-time.After(time.Until(until)):
		}
	}
	return forced
}

// churnLink is one replica in the primary's /status.
type churnLink struct {
	Addr       string `json:"addr"`
	Connected  bool   `json:"connected"`
	Acked      uint64 `json:"acked_lsn"`
	Resyncs    int    `json:"resyncs"`
	Installs   int    `json:"installs"`
	Overflows  int    `json:"install_overflows"`
	Repeats    int    `json:"install_repeats"`
	Installing bool   `json:"installing"`
}

type churnVolume struct {
	Volume   string      `json:"volume"`
	Head     uint64      `json:"head_lsn"`
	LogFirst uint64      `json:"log_first_lsn"`
	Links    []churnLink `json:"replicas"`
}

// waitLogPassed waits until the primary's log starts after what replica i
// acknowledged: it will need a snapshot.
func waitLogPassed(t *testing.T, admin, vol string, i int) {
	t.Helper()
	deadline := time.Now().Add(churnResyncDur)
	for {
		v, ok := primaryVolume(admin, vol)
		if ok && i < len(v.Links) && v.LogFirst > v.Links[i].Acked+1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the primary's log still reaches replica %d after %v: %+v", i+1, churnResyncDur, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// primaryVolume reads the primary's /status for vol.
func primaryVolume(admin, vol string) (churnVolume, bool) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + "/status")
	if err != nil {
		return churnVolume{}, false
	}
	defer resp.Body.Close()
	var st struct {
		Volumes []churnVolume `json:"volumes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return churnVolume{}, false
	}
	for _, v := range st.Volumes {
		if v.Volume == vol {
			return v, true
		}
	}
	return churnVolume{}, false
}

func linkStatus(admin, vol string, i int) (churnLink, bool) {
	v, ok := primaryVolume(admin, vol)
	if !ok || i >= len(v.Links) {
		return churnLink{}, false
	}
	return v.Links[i], true
}

// waitChurnConverged waits until every replica holds the head.
func waitChurnConverged(t *testing.T, admin, vol string) []churnLink {
	t.Helper()
	deadline := time.Now().Add(churnConverge)
	for {
		v, ok := primaryVolume(admin, vol)
		done := ok
		for _, l := range v.Links {
			done = done && l.Connected && !l.Installing && l.Acked == v.Head
		}
		if done {
			return v.Links
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not at the head %d within %v: %+v", v.Head, churnConverge, v.Links)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
