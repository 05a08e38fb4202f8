package e2e

// The ledger of the fault-injection test: what the clients saw
// acknowledged (faults_client_test.go's lines), checked against a
// recovered volume. The promise, as docs/architecture.md narrowed it: a
// file whose fsync and close returned 0 is stored with its content and
// inode number; an fsync that shipped content and a rename that returned
// 0 cover every change made before they started through the same primary
// (another primary recovered only what a quorum held); an unlink so
// covered is never undone. A name seen gone after recovery never comes
// back: recovery writes its state to a quorum before serving.

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type fstate int

const (
	fMaybe   fstate = iota // a call on it failed or is unanswered: at one of names, or gone
	fPresent               // acknowledged at names[0]
	fDeleted               // its unlink at names[0] returned 0
)

// ffile is one file of the workload, known by the name it was created with.
type ffile struct {
	state     fstate
	names     []string // present, deleted: one; maybe: the candidates
	hash      [32]byte
	hashKnown bool // acknowledged, or seen after a recovery
	ino       uint64
	delEnd    int64  // deleted: when the unlink returned
	delPrim   string // deleted: the primary it was made through
}

// faultCounts are the totals the test prints.
type faultCounts struct {
	trials, acked, lost, resurrected, corrupted, torn, unexpected int
	hung, kills, slowKills, ops, delivered                        int64
	maxLat, maxKill                                               time.Duration
}

// faultLedger is fed by every client's lines and checked after each
// recovery. It is shared by the clients' reader goroutines.
type faultLedger struct {
	mu     sync.Mutex
	files  map[string]*ffile // by creation name; dropped once seen gone
	byName map[string]*ffile // every candidate name of a file in files
	cover  map[string]int64  // primary → start of its latest acknowledged covering call
	gone   map[uint64]bool   // names (nameKey) seen absent after recovery, never to return
	slow   []slowCall        // calls to judge against the latency bound
	errnos map[string]int    // "op errno" → count
	bad    []string          // wrong answers and broken promises (first ones)
	c      faultCounts
	spool  int // files in the spool at the last verify
	fol    followerNotes
}

// slowCall is a call that took longer than the clients' slow bound.
type slowCall struct {
	prim, op, path, result string
	t0, t1                 int64
}

func newFaultLedger() *faultLedger {
	return &faultLedger{files: map[string]*ffile{}, byName: map[string]*ffile{}, cover: map[string]int64{},
		gone: map[uint64]bool{}, errnos: map[string]int{}, fol: newFollowerNotes()}
}

// expectedErrnos are the answers a fault explains: EIO (no quorum within
// the flush timeout, or fenced), EROFS (fenced), ENOTCONN and
// ECONNABORTED (the primary was killed or its connection aborted).
var expectedErrnos = map[string]bool{"EIO": true, "EROFS": true, "ENOTCONN": true, "ECONNABORTED": true}

// fail records a wrong answer or a broken promise.
func (l *faultLedger) fail(kind *int, format string, args ...any) {
	if kind != nil {
		*kind++
	}
	if len(l.bad) < 1000 {
		l.bad = append(l.bad, fmt.Sprintf(format, args...))
	}
}

func num(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// apply takes one line of the client serving primary prim.
func (l *faultLedger) apply(prim, line string) {
	f := strings.Split(line, "\t")
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case f[0] == "C" && len(f) == 3:
		l.track(f[1], &ffile{state: fMaybe, names: []string{f[1]}})
	case f[0] == "A" && len(f) == 4:
		l.fol.ack(f[1])
		l.acked(prim, f[1], uint64(num(f[2])), num(f[3]))
	case f[0] == "r" && len(f) == 4:
		l.fol.removing(f[1], num(f[3]))
		if x := l.byName[f[1]]; x != nil {
			x.state, x.names = fMaybe, []string{f[1], f[2]}
			l.byName[f[2]] = x
		}
	case f[0] == "R" && len(f) == 4:
		l.fol.ack(f[2])
		l.renamed(prim, f[1], f[2], num(f[3]))
	case f[0] == "u" && len(f) == 3:
		l.fol.removing(f[1], num(f[2]))
		l.unlinking(f[1])
	case f[0] == "U" && len(f) == 3:
		if x := l.byName[f[1]]; x != nil {
			x.state, x.delEnd, x.delPrim = fDeleted, num(f[2]), prim
		}
	default:
		l.applyCall(prim, f)
	}
}

// applyCall takes the lines about calls: failures, slow calls, summary.
func (l *faultLedger) applyCall(prim string, f []string) {
	switch {
	case f[0] == "E" && len(f) == 6:
		l.errnos[f[1]+" "+f[3]]++
		// A -H without its -D: a recovery kept the -D's unlink and not
		// the -H's, made after it; the deliverer removes the -H.
		orphan := f[1] == "open" && f[3] == "ENOENT" && strings.HasSuffix(f[2], "-D")
		if !expectedErrnos[f[3]] && !orphan {
			l.fail(&l.c.unexpected, "WRONG ANSWER on %s: %s %s: %s", prim, f[1], f[2], f[3])
		}
	case (f[0] == "L" || f[0] == "P") && len(f) == 6 || f[0] == "P" && len(f) == 5:
		s := slowCall{prim: prim, op: f[1], path: f[2]}
		if f[0] == "L" {
			s.result, s.t0, s.t1 = f[3], num(f[4]), num(f[5])
		} else {
			s.result, s.t0, s.t1 = "still in flight", num(f[3]), num(f[4])
		}
		l.slow = append(l.slow, s)
	case f[0] == "X" && len(f) == 2:
		l.fail(&l.c.corrupted, "DELIVERER on %s: %s", prim, f[1])
	case f[0] == "S" && len(f) == 4:
		l.c.ops += num(f[1])
		l.c.maxLat = max(l.c.maxLat, time.Duration(num(f[2])))
		l.c.delivered += num(f[3])
	default:
		l.fail(&l.c.unexpected, "client of %s: unreadable line %q", prim, strings.Join(f, "\t"))
	}
}

func (l *faultLedger) track(name string, x *ffile) {
	l.files[name] = x
	l.byName[name] = x
}

func (l *faultLedger) acked(prim, name string, ino uint64, t0 int64) {
	x := l.byName[name]
	if x == nil {
		return
	}
	*x = ffile{state: fPresent, names: []string{name}, hash: contentHash(name), hashKnown: true, ino: ino}
	l.c.acked++
	l.covered(prim, t0)
}

// renamed takes a rename that returned 0. The deliverer may have seen
// the new name, and reported its unlink, before the writer reported the
// rename: then the file is already past it.
func (l *faultLedger) renamed(prim, from, to string, t0 int64) {
	l.covered(prim, t0)
	x := l.byName[from]
	if x == nil {
		return
	}
	delete(l.byName, from)
	if x.state == fMaybe && len(x.names) == 2 {
		x.state, x.names = fPresent, []string{to}
	}
}

func (l *faultLedger) covered(prim string, t0 int64) {
	if t0 > l.cover[prim] {
		l.cover[prim] = t0
	}
}

// unlinking marks a file whose unlink is under way as maybe gone; the
// deliverer may find a file the ledger has settled gone only if recovery
// brought it back, which verify reports.
func (l *faultLedger) unlinking(name string) {
	if x := l.byName[name]; x != nil {
		x.state, x.names = fMaybe, []string{name}
	}
}

// judgeSlow counts the calls that waited longer than bound plus the time
// their primary was stopped (SIGSTOP) while they waited.
func (l *faultLedger) judgeSlow(bound time.Duration, stopped func(prim string, t0, t1 int64) time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.slow {
		took := time.Duration(s.t1 - s.t0)
		allowed := bound + stopped(s.prim, s.t0, s.t1)
		if took > allowed {
			l.c.hung++
			l.fail(nil, "HUNG CALL on %s: %s %s took %v (allowed %v): %s", s.prim, s.op, s.path, took.Round(time.Millisecond), allowed.Round(time.Millisecond), s.result)
		}
	}
	l.slow = nil
}

// problems returns the problems recorded since the first n.
func (l *faultLedger) problems(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.bad[min(n, len(l.bad)):]...)
}

// verify checks the volume recovered at dir against the ledger and settles
// what was uncertain to what recovery shows.
func (l *faultLedger) verify(dir string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ents, err := os.ReadDir(filepath.Join(dir, "input"))
	if err != nil {
		l.fail(&l.c.unexpected, "readdir of the recovered input: %v", err)
		return
	}
	listed := map[string]bool{}
	for _, e := range ents {
		listed["input/"+e.Name()] = true
	}
	l.spool = len(listed)
	for _, id := range sortedFiles(l.files) {
		x := l.files[id]
		switch x.state {
		case fPresent:
			l.checkPresent(dir, id, x, listed)
		case fDeleted:
			l.checkDeleted(dir, id, x, listed)
		case fMaybe:
			l.settleMaybe(dir, id, x, listed)
		}
	}
	for _, name := range sortedNames(listed) {
		switch {
		case l.byName[name] != nil:
		case l.gone[nameKey(name)]:
			l.fail(&l.c.resurrected, "RESURRECTED %s: gone after an earlier recovery, back now", name)
		default:
			l.fail(&l.c.unexpected, "UNEXPECTED %s: in the recovered volume, never attempted", name)
		}
	}
}

func (l *faultLedger) checkPresent(dir, id string, x *ffile, listed map[string]bool) {
	name := x.names[0]
	if !listed[name] {
		l.fail(&l.c.lost, "LOST %s (created as %s, inode %d): acknowledged, gone after recovery", name, id, x.ino)
		l.drop(id, x)
		return
	}
	l.checkContent(dir, name, x)
	if name != id && listed[id] {
		l.fail(&l.c.torn, "RENAME UNDONE: %s was renamed to %s (returned 0), the old name is back", id, name)
	}
}

// checkContent compares a listed file with what the ledger knows of it.
func (l *faultLedger) checkContent(dir, name string, x *ffile) {
	hash, ino, err := readFile(filepath.Join(dir, name))
	switch {
	case err != nil:
		l.fail(&l.c.corrupted, "CORRUPTED %s: %v", name, err)
	case x.hashKnown && hash != x.hash:
		l.fail(&l.c.corrupted, "CORRUPTED %s: content differs from what was acknowledged", name)
	case x.hashKnown && ino != x.ino:
		l.fail(&l.c.corrupted, "CORRUPTED %s: inode %d, acknowledged as %d", name, ino, x.ino)
	}
	x.hash, x.ino, x.hashKnown = hash, ino, err == nil
}

func (l *faultLedger) checkDeleted(dir, id string, x *ffile, listed map[string]bool) {
	name := x.names[0]
	if !listed[name] {
		l.drop(id, x)
		return
	}
	if x.delEnd < l.cover[x.delPrim] {
		l.fail(&l.c.resurrected, "DELETION UNDONE: %s was unlinked on %s before a later acknowledged covering call, and is back", name, x.delPrim)
	}
	l.checkContent(dir, name, x)
	x.state = fPresent // the unlink was not covered: the file lives on
}

func (l *faultLedger) settleMaybe(dir, id string, x *ffile, listed map[string]bool) {
	found := ""
	for _, n := range x.names {
		if !listed[n] {
			continue
		}
		if found != "" {
			l.fail(&l.c.torn, "RENAME TORN: %s is under both %s and %s", id, found, n)
		}
		found = n
	}
	if found == "" {
		l.drop(id, x)
		return
	}
	for _, n := range x.names {
		if n != found {
			delete(l.byName, n)
			l.gone[nameKey(n)] = true
		}
	}
	x.state, x.names = fPresent, []string{found}
	l.checkContent(dir, found, x)
}

// drop forgets a file seen gone; its names must never come back.
func (l *faultLedger) drop(id string, x *ffile) {
	for _, n := range x.names {
		delete(l.byName, n)
		l.gone[nameKey(n)] = true
	}
	delete(l.files, id)
}

// nameKey is a name in the gone set: 64 bits rather than the string, as
// a long run sees millions of names.
func nameKey(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func sortedFiles(m map[string]*ffile) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func sortedNames(m map[string]bool) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// counts returns a copy of the totals.
func (l *faultLedger) counts() faultCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}
