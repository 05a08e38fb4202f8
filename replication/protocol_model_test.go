package replication

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// The oracle of TestProtocolRandom. Each primary (a term) writes a
// history: the states of a tiny spool (names in the root directory, each
// with its inode and content) after each lsn, from the base it recovered.
// A replica's position (last term, lsn) names one such state; a recovered
// volume must be exactly it, and every record whose Wait returned nil must
// be on its line of descent.

// spool is a volume's state as the test sees it: name → "ino:content".
type spool map[string]string

func (s spool) String() string {
	keys := slices.Sorted(maps.Keys(s))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s ", k, s[k])
	}
	return "{" + strings.TrimSpace(b.String()) + "}"
}

// spoolOf reads a snapshot's root directory.
func spoolOf(snap *Snapshot) (spool, error) {
	byIno := map[uint64]*SnapInode{}
	for i := range snap.Inodes {
		byIno[snap.Inodes[i].Ino] = &snap.Inodes[i]
	}
	root := byIno[RootIno]
	if root == nil {
		return nil, fmt.Errorf("snapshot at lsn %d has no root", snap.LSN)
	}
	s := spool{}
	for _, e := range root.Entries {
		in := byIno[e.Ino]
		if in == nil {
			return nil, fmt.Errorf("snapshot at lsn %d: %q names missing inode %d", snap.LSN, e.Name, e.Ino)
		}
		s[e.Name] = fmt.Sprintf("%d:%s", e.Ino, in.Data)
	}
	return s, nil
}

// history is what the primary of one term wrote.
type history struct {
	term     uint64
	baseTerm uint64 // the position it recovered; a new volume: baseTerm == term, baseLSN 0
	baseLSN  uint64
	// INVARIANT: states[i] is the spool at lsn baseLSN+i; states[0] is the base.
	states []spool
}

func (h *history) newVolume() bool { return h.baseTerm == h.term }

// pos is a record (term, lsn) whose Wait returned nil.
type pos struct{ term, lsn uint64 }

// oracle holds every history of one schedule and the acknowledged records.
type oracle struct {
	mu    sync.Mutex
	hists map[uint64]*history
	acked []pos
}

func newOracle() *oracle { return &oracle{hists: map[uint64]*history{}} }

func (o *oracle) ack(term, lsn uint64) {
	o.mu.Lock()
	o.acked = append(o.acked, pos{term, lsn})
	o.mu.Unlock()
}

// stateAt is the spool at position (term, lsn).
func (o *oracle) stateAt(term, lsn uint64) (spool, error) {
	for {
		h := o.hists[term]
		if h == nil {
			return nil, fmt.Errorf("no primary of term %d wrote anything", term)
		}
		if lsn >= h.baseLSN {
			if i := lsn - h.baseLSN; i < uint64(len(h.states)) {
				return h.states[i], nil
			}
			return nil, fmt.Errorf("lsn %d is past what term %d wrote (up to %d)", lsn, term, h.baseLSN+uint64(len(h.states))-1)
		}
		if h.newVolume() {
			return nil, fmt.Errorf("lsn %d is before the new volume of term %d", lsn, term)
		}
		term = h.baseTerm
	}
}

// descends reports whether record p is in the history that leads to
// position (term, lsn).
func (o *oracle) descends(p pos, term, lsn uint64) bool {
	for {
		if term == p.term {
			return p.lsn <= lsn
		}
		h := o.hists[term]
		if h == nil || h.newVolume() {
			return false
		}
		term, lsn = h.baseTerm, min(lsn, h.baseLSN)
	}
}

// recovered checks what OpenPrimary returned (term, its base, the
// snapshot) and starts the new term's history. Every acknowledged record
// of an older term must be in it, and it must be exactly the state its
// position names.
func (o *oracle) recovered(term, baseTerm uint64, snap *Snapshot) (*history, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	got, err := spoolOf(snap)
	if err != nil {
		return nil, err
	}
	h := &history{term: term, baseTerm: baseTerm, baseLSN: snap.LSN, states: []spool{got}}
	if h.newVolume() {
		if snap.LSN != 0 || len(got) != 0 {
			return nil, fmt.Errorf("term %d: a new volume at lsn %d holding %v", term, snap.LSN, got)
		}
	} else {
		want, err := o.stateAt(baseTerm, snap.LSN)
		if err != nil {
			return nil, fmt.Errorf("term %d recovered lsn %d of term %d: %w", term, snap.LSN, baseTerm, err)
		}
		if !maps.Equal(got, want) {
			return nil, fmt.Errorf("term %d recovered lsn %d of term %d as %v, but that position holds %v", term, snap.LSN, baseTerm, got, want)
		}
	}
	if o.hists[term] != nil {
		return nil, fmt.Errorf("term %d recovered twice", term)
	}
	o.hists[term] = h
	for _, p := range o.acked {
		if p.term < term && !o.descends(p, baseTerm, snap.LSN) {
			return nil, fmt.Errorf("term %d recovered lsn %d of term %d, which lacks acknowledged lsn %d of term %d (acknowledged: %v)",
				term, snap.LSN, baseTerm, p.lsn, p.term, o.acked)
		}
	}
	return h, nil
}

// writer is the test's stand-in for an actor on one primary: it makes
// valid records for the spool, appends them, and serves snapshots.
type writer struct {
	o      *oracle
	h      *history
	p      *Primary
	node   string
	closed bool // guarded by schedule.mu

	mu      sync.Mutex // Append and the snapshot source see one order
	lsn     uint64
	nextIno uint64
	cur     spool
	inos    map[string]uint64
	data    map[uint64]string

	// views counts the data records appended with their content as a
	// view (as the actor hands them: read off Append by readContents),
	// and released those views: once the primary is closed, every view
	// must have been released exactly once.
	views, released atomic.Int64
}

// protoView is a data record's content as the actor hands it
// (volume.Content): its bytes, read later on the primary's reader.
type protoView struct {
	w    *writer
	exts []Extent
	data []byte
	done atomic.Bool
}

func (v *protoView) Read() ([]Extent, []byte, error) {
	return slices.Clone(v.exts), bytes.Clone(v.data), nil
}

func (v *protoView) Release() {
	if v.done.Swap(true) {
		v.w.released.Add(1 << 32) // a second release: seen as a mismatch by checkViews
		return
	}
	v.w.released.Add(1)
}

// checkViews reports views not released, or released twice, once the
// writer's primary is closed.
func (w *writer) checkViews() error {
	if made, rel := w.views.Load(), w.released.Load(); made != rel {
		return fmt.Errorf("%s: %d content views made, releases counted %d (2^32 per double release)", w.node, made, rel)
	}
	return nil
}

func newWriter(o *oracle, h *history, p *Primary, snap *Snapshot, node string) *writer {
	w := &writer{o: o, h: h, p: p, node: node, lsn: snap.LSN, nextIno: snap.NextIno, cur: h.states[0],
		inos: map[string]uint64{}, data: map[uint64]string{}}
	for i := range snap.Inodes {
		in := &snap.Inodes[i]
		w.data[in.Ino] = string(in.Data)
	}
	for _, in := range snap.Inodes {
		if in.Ino == RootIno {
			for _, e := range in.Entries {
				w.inos[e.Name] = e.Ino
			}
		}
	}
	p.SetSnapshotSource(w.snapshot)
	return w
}

// appendLocked gives r the next lsn, appends it and notes the new state.
func (w *writer) appendLocked(r *Record, next spool) uint64 {
	w.lsn++
	r.LSN = w.lsn
	w.cur = next
	w.o.mu.Lock()
	w.h.states = append(w.h.states, next)
	w.o.mu.Unlock()
	w.p.Append(r)
	return r.LSN
}

// write creates name (if new) and gives it content; it returns the lsn
// to wait for.
func (w *writer) write(name, content string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ino, ok := w.inos[name]
	if !ok {
		ino = w.nextIno
		w.nextIno++
		w.inos[name] = ino
		w.data[ino] = ""
		next := maps.Clone(w.cur)
		next[name] = fmt.Sprintf("%d:", ino)
		w.appendLocked(&Record{Op: OpCreate, Ino: ino, Parent: RootIno, Name: name, Attr: fileAttr(0)}, next)
	}
	old := w.data[ino]
	w.data[ino] = content
	next := maps.Clone(w.cur)
	next[name] = fmt.Sprintf("%d:%s", ino, content)
	r := &Record{Op: OpData, Ino: ino, Attr: fileAttr(len(content)), Data: []byte(content)}
	if ok && w.lsn%2 == 0 { // half the rewrites ship only what changed, as the actor does
		r = partialData(ino, old, content)
	}
	if w.lsn%3 != 0 { // two data records in three carry a view, as from the actor
		w.views.Add(1)
		r.Content = &protoView{w: w, exts: r.Extents, data: r.Data}
		r.Extents, r.Data = nil, nil
	}
	return w.appendLocked(r, next)
}

// partialData is a partial data record that turns file ino's content old
// into content: one range from the first byte that differs to the end
// (none when content is a prefix of old: the size cuts the rest). Applied
// to anything but old it gives the wrong content, which the recovered
// spools would show.
func partialData(ino uint64, old, content string) *Record {
	p := 0
	for p < len(old) && p < len(content) && old[p] == content[p] {
		p++
	}
	r := &Record{Op: OpData, Ino: ino, Attr: fileAttr(len(content)), Partial: true, Ranges: []Extent{}}
	if p < len(content) {
		g := Extent{Off: uint64(p), Len: uint64(len(content) - p)}
		r.Ranges, r.Extents, r.Data = []Extent{g}, []Extent{g}, []byte(content[p:])
	}
	return r
}

// unlink removes name; ok is false when there is no such name.
func (w *writer) unlink(name string) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ino, ok := w.inos[name]
	if !ok {
		return 0, false
	}
	delete(w.inos, name)
	delete(w.data, ino)
	next := maps.Clone(w.cur)
	delete(next, name)
	r := &Record{Op: OpUnlink, Ino: ino, Parent: RootIno, Name: name, Attr: Attr{Mode: modeReg | 0o644, Ctime: testTime}}
	return w.appendLocked(r, next), true
}

// names lists the spool's names in order.
func (w *writer) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.inos))
}

// snapshot is the primary's SnapshotSource: the spool at the last
// appended lsn.
func (w *writer) snapshot(context.Context) (*Snapshot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	root := SnapInode{Ino: RootIno, Attr: dirAttr()}
	snap := &Snapshot{LSN: w.lsn, NextIno: w.nextIno}
	for name, ino := range w.inos {
		root.Entries = append(root.Entries, SnapDirent{Name: name, Ino: ino})
		d := w.data[ino]
		snap.Inodes = append(snap.Inodes, SnapInode{Ino: ino, Attr: fileAttr(len(d)), Data: []byte(d)})
	}
	sort.Slice(root.Entries, func(i, j int) bool { return root.Entries[i].Name < root.Entries[j].Name })
	snap.Inodes = append(snap.Inodes, root)
	return snap, nil
}
