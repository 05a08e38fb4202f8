package e2e

// The follower of the fault-injection test (issue 11): `spoolfs mount
// --follow` through the same proxies as the primaries, mounted for the
// whole run while primaries are killed, stopped, doubled and recovered
// and replicas killed, stopped, cut off and filled. A sampler reads its
// applied position (/status) and its spool directory every 200 ms:
//
//   - its position never goes back by (term, lsn) (a newer term outranks
//     any lsn of an older one, whose unacknowledged tail a recovery may
//     have dropped);
//   - an acknowledged file (fsync and close returned 0, or the name a
//     rename that returned 0 gave it), once seen there, vanishes only
//     after its unlink or rename was attempted on a primary: the client's
//     lines carry the monotonic time of each attempt, compared with the
//     end of the listing that missed the name.
//
// After the last recovery the follower's tree (names, inode numbers,
// modes, sizes, contents) must equal the recovered primary's once its
// applied lsn reached the replicas'.

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// followerSample is the sampler's period.
const followerSample = 200 * time.Millisecond

// followerNotes is what the ledger keeps for the follower's checks: the
// names acknowledged and the earliest removal attempt of each name
// (CLOCK_MONOTONIC), by nameKey. The ledger's mutex guards it.
type followerNotes struct {
	acked   map[uint64]bool
	removal map[uint64]int64
}

func newFollowerNotes() followerNotes {
	return followerNotes{acked: map[uint64]bool{}, removal: map[uint64]int64{}}
}

func (n *followerNotes) ack(name string) { n.acked[nameKey(name)] = true }

func (n *followerNotes) removing(name string, t0 int64) {
	k := nameKey(name)
	if old, ok := n.removal[k]; !ok || t0 < old {
		n.removal[k] = t0
	}
}

// vanish is a name seen on the follower and missing from a later listing
// that ended at t (CLOCK_MONOTONIC).
type vanish struct {
	name string
	t    int64
}

// faultFollower is the follower of the fault test and its sampler.
type faultFollower struct {
	f    *follower
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	last     position
	seen     map[string]bool // names of input/ in the last listing
	vanished []vanish        // to judge once the clients' lines are all read
	samples  int
	failed   int // samples whose status or listing failed
	checked  int // vanishes judged
	back     []string
}

// startFollower mounts the follower through the proxies and starts its
// sampler; stopFollower ends both.
func (e *faultEnv) startFollower() {
	e.t.Helper()
	f := startFollowerOn(e.t, e.proxyAddrs(), e.vol, "follower")
	e.fol = &faultFollower{f: f, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	go e.fol.run()
}

func (ff *faultFollower) run() {
	defer close(ff.done)
	for {
		select {
		case <-ff.stop:
			return
		case <-time.After(followerSample):
		}
		ff.sample()
	}
}

// sample reads the follower's position and its input/ directory.
func (ff *faultFollower) sample() {
	pos, perr := ff.f.position()
	ents, lerr := os.ReadDir(ff.f.path("input"))
	end := monoNow()
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.samples++
	if perr == nil {
		if pos.before(ff.last) && len(ff.back) < 20 {
			ff.back = append(ff.back, fmt.Sprintf("FOLLOWER WENT BACK: position %v after %v", pos, ff.last))
		}
		ff.last = pos
	}
	if perr != nil || lerr != nil {
		ff.failed++
		return
	}
	now := make(map[string]bool, len(ents))
	for _, e := range ents {
		now["input/"+e.Name()] = true
	}
	for n := range ff.seen {
		if !now[n] {
			ff.vanished = append(ff.vanished, vanish{n, end})
		}
	}
	ff.seen = now
}

// judge checks the vanishes noted so far against the ledger, once every
// client's lines are read (the end of a trial).
func (e *faultEnv) judgeFollower() {
	ff := e.fol
	ff.mu.Lock()
	v, back := ff.vanished, ff.back
	ff.vanished, ff.back = nil, nil
	ff.checked += len(v)
	ff.mu.Unlock()
	l := e.led
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range back {
		l.fail(&l.c.unexpected, "%s", b)
	}
	for _, x := range v {
		k := nameKey(x.name)
		if !l.fol.acked[k] {
			continue // never acknowledged: a recovery may drop it
		}
		if t0, ok := l.fol.removal[k]; !ok || t0 > x.t {
			l.fail(&l.c.resurrected, "FOLLOWER LOST %s: acknowledged, seen on the follower, missing from its listing before any unlink or rename of it was attempted", x.name)
		}
	}
}

// finishFollower waits until the follower shows the recovered primary
// p's tree, stops the sampler and reports its counts.
func (e *faultEnv) finishFollower(p *fprimary) {
	ff := e.fol
	close(ff.stop)
	select {
	case <-ff.done:
	case <-time.After(60 * time.Second):
		ff.f.dumpAndAbort(e.t, "the follower's sampler is stuck on its mount")
		<-ff.done
		return
	}
	e.judgeFollower()
	var lsn uint64
	for _, r := range e.c.reps {
		lsn = max(lsn, replicaLSN(r.addr, e.vol))
	}
	testsupport.WaitForErr(e.t, 60*time.Second, "the follower's applied lsn to reach the replicas'", func() error {
		pos, err := ff.f.position()
		if err == nil && pos.LSN < lsn {
			err = fmt.Errorf("follower at %v, replicas at lsn %d", pos, lsn)
		}
		return err
	})
	testsupport.WaitForErr(e.t, 60*time.Second, "the follower's tree to equal the recovered primary's", func() error {
		return treesDiffer(p.dir, ff.f.dir)
	})
	resyncs := -1
	if st, err := ff.f.status(); err == nil {
		resyncs = st.Follow.Resyncs
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	fmt.Printf("faults: follower: %d samples (%d failed), %d vanished names judged, last position %v, resyncs %d; its tree equals the recovered primary's\n",
		ff.samples, ff.failed, ff.checked, ff.last, resyncs)
	if e.t.Failed() {
		e.t.Logf("follower output (last lines):\n%s", lastLines(ff.f.out.String(), 20))
	}
	ff.f.stop(e.t)
}
