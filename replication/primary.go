package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// PrimaryConfig says how a primary reaches the replicas of its volume.
type PrimaryConfig struct {
	Volume   string   // volume name ([A-Za-z0-9._-], up to 128)
	NodeID   string   // this node, recorded by replicas with the term it acquires
	Replicas []string // replica addresses, host:port
	// W is the write quorum: a record is durable once W replicas hold it.
	// Default: a majority of Replicas (2 of 3). Must be a majority, so that
	// two primaries can never both hold a quorum.
	W int

	// Creds secures the connections (mTLS); nil: plaintext.
	Creds       credentials.TransportCredentials
	DialOptions []grpc.DialOption // appended to the defaults

	// AcquireTimeout bounds OpenPrimary: acquiring the term and recovering
	// (default 30s). The caller's context may end it sooner.
	AcquireTimeout time.Duration
	// CallTimeout bounds one Acquire call and a stream's handshake
	// (default 5s).
	CallTimeout time.Duration
	// MaxLogBytes bounds the in-memory log of records not yet on every
	// replica (default 64 MiB: with the GC's headroom a full log then
	// keeps the primary within 2× its live data plus 256 MiB, issue 9;
	// docs/failures.md 3a). A replica that falls further behind is
	// resynchronised with a snapshot.
	MaxLogBytes int64
	// MinBackoff and MaxBackoff bound the reconnect delays (default 50ms
	// and 1s, doubling). A deposed primary whose links are reconnecting
	// learns of its fencing at their next try, so MaxBackoff bounds how
	// long it may look healthy (docs/failures.md, 5).
	MinBackoff, MaxBackoff time.Duration
	// ShipDelay is how long a record nobody waits for may sit in the log
	// before it is sent to every replica (default 5ms; negative: send
	// every record at once). A Wait sends at once everything up to its
	// LSN to the W fastest replicas, so records travel in batches — a spool
	// message's create and data records in one Ship message and one write
	// per replica — and the other replicas trail by up to ShipDelay, each
	// batch of theirs carrying many waits (doc.go, "Quorum first").
	ShipDelay time.Duration
	// HedgeDelay is the least time a Wait gives the W fastest replicas
	// before it sends to the trailing ones too (default 2ms; it grows to
	// 4× the recent durability latency under load).
	HedgeDelay time.Duration
	// ProbeInterval is how often a link that heard nothing from its
	// replica for that long asks whether it answers (the gRPC health
	// service, probe.go); default 1s. An idle volume's replicas send no
	// acks, and a stopped or cut-off replica keeps its connection for the
	// keepalive's 15 s: the probes are what lets Answering tell, within a
	// few seconds, whether W replicas would make a write durable.
	ProbeInterval time.Duration

	// Root gives the owner and permission bits of the root directory of a
	// volume no replica holds yet (default mode 0755, owner 0:0).
	Root Attr
	// Progress, when set, hears how recovery advances (fetch, install). It
	// is called from one goroutine at a time.
	Progress func(Progress)
	Log      *zap.Logger
	// Observer is told each replica's ack latency and each data record's
	// bytes (observer.go); nil: nobody.
	Observer PrimaryObserver

	holder string // NodeID plus a random suffix: this OpenPrimary call
	// versions: the protocol versions spoken (zero: this build's; tests
	// set others to play another release).
	versions versionRange
}

// Progress reports recovery: Phase is "acquire", "fetch", "install" or
// "done"; counts are for the replica named by Replica.
type Progress struct {
	Phase       string
	Replica     string
	Term        uint64
	Inodes      uint64
	InodesTotal uint64
	Bytes       uint64
	BytesTotal  uint64
}

func (c PrimaryConfig) withDefaults() (PrimaryConfig, error) {
	if !volumeNameRE.MatchString(c.Volume) {
		return c, fmt.Errorf("replication: volume name %q: want 1-128 of [A-Za-z0-9._-]", c.Volume)
	}
	if len(c.Replicas) == 0 {
		return c, errors.New("replication: replicas: none given")
	}
	seen := map[string]bool{}
	for _, r := range c.Replicas {
		if r == "" || seen[r] {
			return c, fmt.Errorf("replication: replicas: %q empty or listed twice", r)
		}
		seen[r] = true
	}
	n := len(c.Replicas)
	if c.W == 0 {
		c.W = n/2 + 1
	}
	if c.W <= n/2 || c.W > n {
		return c, fmt.Errorf("replication: w: %d of %d replicas is not a majority", c.W, n)
	}
	setDefault(&c.AcquireTimeout, 30*time.Second)
	setDefault(&c.CallTimeout, 5*time.Second)
	setDefault(&c.MinBackoff, 50*time.Millisecond)
	setDefault(&c.MaxBackoff, time.Second)
	if c.ShipDelay == 0 {
		c.ShipDelay = 5 * time.Millisecond
	}
	setDefault(&c.HedgeDelay, 2*time.Millisecond)
	setDefault(&c.ProbeInterval, time.Second)
	if c.MaxLogBytes == 0 {
		c.MaxLogBytes = 64 << 20
	}
	if c.NodeID == "" {
		c.NodeID = "primary"
	}
	c.holder = fmt.Sprintf("%s/%016x", c.NodeID, rand.Uint64())
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// SnapshotSource returns a consistent copy of the volume as the actor
// holds it (node asks the actor). All records up to its LSN must already
// have been appended.
type SnapshotSource func(ctx context.Context) (*Snapshot, error)

// Primary ships one volume's records to its replicas and tells when they
// are durable. Append and Durable never block; Wait does.
type Primary struct {
	cfg      PrimaryConfig
	log      *zap.Logger
	term     uint64
	baseTerm uint64 // the recovered state's position (see doc.go, Histories)
	baseLSN  uint64
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	links    []*link
	durable  atomic.Uint64
	// waitEWMA is a moving average of how long Waits that had to wait
	// took, in ns (it sets the hedge).
	waitEWMA atomic.Int64
	// testSkipLSN: tests set it to make one link skip that record once.
	testSkipLSN atomic.Uint64

	mu sync.Mutex
	// INVARIANT: entries[i].LSN == first+i; entries end at head.
	entries []*Record
	// appended[i] is when entries[i] was appended (lag in seconds).
	// INVARIANT: len(appended) == len(entries).
	appended  []time.Time
	first     uint64
	head      uint64
	logBytes  int64
	failed    error         // non-nil: fenced, closed or broken; Wait fails with it
	durableCh chan struct{} // closed and replaced when durable or failed changes
	snapSrc   SnapshotSource
	shipArmed bool // a ShipDelay timer will wake the links
	// lostLSN is the highest lsn a Wait gave up on when its deadline
	// passed: the quorum could not make it durable in time. While it is
	// above Durable, Waits fail at once (quorumLost).
	// INVARIANT: lostLSN == 0 or lostLSN > durable.
	lostLSN uint64
	// quorum is the set of W links a Wait wakes first (wakeQuorum).
	quorum []*link
	// unread lists the data records whose content is still a view on
	// the actor's memfd (Record.Content), in LSN order: readContents
	// reads them one by one (content.go).
	// INVARIANT: every record here has Content set, and only these do.
	unread []*Record
	// readable is the highest LSN up to which every record has its
	// bytes: links send nothing above it (records).
	// INVARIANT: readable == head if unread is empty, else
	// unread[0].LSN-1.
	readable uint64
	// unreadCh (cap 1) wakes readContents after an Append to unread.
	unreadCh chan struct{}
	// dataBytes, dataRecords and partialRecords count the data records
	// appended and read (countDataLocked; Status).
	dataBytes, dataRecords, partialRecords uint64
}

// Term is the term this primary holds.
func (p *Primary) Term() uint64 { return p.term }

// SetSnapshotSource tells the primary how to get a snapshot for a replica
// its log no longer reaches. Until it is set, such a replica's link fails
// its sessions and retries after its backoff; waking the links would only
// make them send what the log holds early.
func (p *Primary) SetSnapshotSource(src SnapshotSource) {
	p.mu.Lock()
	p.snapSrc = src
	p.mu.Unlock()
}

// Append queues the next record (LSN = last + 1) for every replica and
// stamps it with the term. It never blocks. The Primary owns r from now.
// A data record whose content is still a view (r.Content) is read by
// readContents before it is sent (content.go). After the primary failed
// (fenced, closed) records are dropped: their Wait fails.
func (p *Primary) Append(r *Record) {
	p.mu.Lock()
	if p.failed != nil {
		p.mu.Unlock()
		releaseContent(r)
		return
	}
	if r.LSN != p.head+1 {
		p.failLocked(fmt.Errorf("replication: record lsn %d appended after %d", r.LSN, p.head))
		p.mu.Unlock()
		releaseContent(r)
		return
	}
	r.Term = p.term
	p.entries = append(p.entries, r)
	p.appended = append(p.appended, time.Now())
	p.head = r.LSN
	p.logBytes += recordSize(r)
	p.growPinsLocked(recordSize(r))
	if r.Content != nil {
		p.unread = append(p.unread, r)
		select {
		case p.unreadCh <- struct{}{}:
		default:
		}
	} else {
		p.countDataLocked(r)
		if len(p.unread) == 0 {
			p.readable = r.LSN
		}
	}
	p.trimLocked()
	p.scheduleShipLocked()
}

// countDataLocked counts a data record's bytes once they are known (at
// Append, or once its view is read): Status and the observer (caller
// holds p.mu).
func (p *Primary) countDataLocked(r *Record) {
	if r.Op != OpData {
		return
	}
	p.dataBytes += uint64(len(r.Data))
	p.dataRecords++
	if r.Partial {
		p.partialRecords++
	}
	if o := p.cfg.Observer; o != nil {
		o.DataRecord(len(r.Data), r.Partial)
	}
}

// scheduleShipLocked sends what the log holds to every replica now
// (ShipDelay < 0) or within ShipDelay. It unlocks p.mu.
func (p *Primary) scheduleShipLocked() {
	if p.cfg.ShipDelay < 0 {
		p.mu.Unlock()
		p.wakeAll()
		return
	}
	arm := !p.shipArmed
	p.shipArmed = true
	p.mu.Unlock()
	if arm {
		time.AfterFunc(p.cfg.ShipDelay, p.ship)
	}
}

// ship sends what the log holds: the ShipDelay timer's end, or a Wait.
func (p *Primary) ship() {
	p.mu.Lock()
	p.shipArmed = false
	p.mu.Unlock()
	p.wakeAll()
}

func (p *Primary) wakeAll() {
	for _, l := range p.links {
		l.poke()
	}
}

// Durable is the highest LSN stored on W replicas (never decreases).
func (p *Primary) Durable() uint64 { return p.durable.Load() }

// wakeQuorum wakes the W links expected to acknowledge first. The set is
// sticky — the trailing replica gets its records in ShipDelay batches only
// if it stays the trailing one — and is chosen again, by recent ack
// latency, when one of its links is down or lags far behind a link
// outside it. With fewer than W links up it wakes them all.
func (p *Primary) wakeQuorum() {
	if p.cfg.W >= len(p.links) {
		p.wakeAll()
		return
	}
	p.mu.Lock()
	if !p.quorumHolds(time.Now()) {
		var up []*link
		for _, l := range p.links {
			if l.connected {
				up = append(up, l)
			}
		}
		if len(up) < p.cfg.W {
			p.mu.Unlock()
			p.wakeAll()
			return
		}
		now := time.Now()
		slices.SortStableFunc(up, func(a, b *link) int { return cmp.Compare(a.latency(now), b.latency(now)) })
		p.quorum = up[:p.cfg.W]
	}
	for _, l := range p.quorum {
		l.poke()
	}
	p.mu.Unlock()
}

// quorumHolds says whether the current quorum set may stay: W links, all
// up, none stalled, none slower on average than 3× a link outside it and
// by more than 2 ms (caller holds p.mu).
func (p *Primary) quorumHolds(now time.Time) bool {
	if len(p.quorum) != p.cfg.W {
		return false
	}
	slowest := time.Duration(0)
	for _, l := range p.quorum {
		if !l.connected || l.stalled(now) {
			return false
		}
		slowest = max(slowest, l.ackEWMA)
	}
	for _, l := range p.links {
		if l.connected && !slices.Contains(p.quorum, l) {
			if d := l.ackEWMA; slowest > 3*d && slowest > d+2*time.Millisecond {
				return false
			}
		}
	}
	return true
}

// hedge is how long a Wait gives the quorum links before it wakes all.
func (p *Primary) hedge() time.Duration {
	return max(p.cfg.HedgeDelay, 4*time.Duration(p.waitEWMA.Load()))
}

// Wait blocks until lsn is durable. It fails with ErrFenced when another
// primary took the volume, ErrNoQuorum when ctx ends first (the record
// stays queued and is shipped when replicas return), ErrClosed after Close.
//
// It sends the records up to lsn to the W replicas that acknowledged
// fastest lately; if they have not made it durable within the hedge delay,
// to every replica.
//
// A Wait whose deadline passes marks the quorum lost (quorumLost): from
// then on, until that lsn is durable, every Wait for a record not yet
// durable fails at once with ErrNoQuorum, the waiting ones included. The
// replicas apply records in order, so those Waits would need the lost
// record first; and a covering call (rename, link) waits while the kernel
// holds its directory's lock, so Waits that each took their whole deadline
// one after another would freeze the directory for as many deadlines
// (docs/failures.md, 2).
func (p *Primary) Wait(ctx context.Context, lsn uint64) error {
	if p.durable.Load() >= lsn {
		return nil
	}
	p.wakeQuorum() // someone waits: no ShipDelay for these records
	start := time.Now()
	hedge := time.NewTimer(p.hedge())
	defer hedge.Stop()
	for {
		if p.durable.Load() >= lsn {
			p.noteWait(time.Since(start))
			return nil
		}
		p.mu.Lock()
		ch, failed, lost := p.durableCh, p.failed, p.lostLSN
		p.mu.Unlock()
		if p.durable.Load() >= lsn {
			return nil
		}
		if failed != nil {
			return fmt.Errorf("replication: wait for lsn %d: %w", lsn, failed)
		}
		if lost != 0 {
			return fmt.Errorf("replication: lsn %d not on %d replicas: %w: lsn %d was not durable by its deadline, and until it is every wait fails at once (%s)",
				lsn, p.cfg.W, ErrNoQuorum, lost, p.ackSummary())
		}
		select {
		case <-ch:
		case <-hedge.C:
			p.wakeAll()
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				p.quorumLost(lsn)
			}
			return fmt.Errorf("replication: lsn %d not on %d replicas (%s): %w (%w)",
				lsn, p.cfg.W, p.ackSummary(), ErrNoQuorum, ctx.Err())
		}
	}
}

// quorumLost notes that lsn was not durable by a Wait's deadline and wakes
// every Wait, which then fails at once until lsn is durable (setAcked).
func (p *Primary) quorumLost(lsn uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lsn <= p.durable.Load() || lsn <= p.lostLSN {
		return
	}
	if p.lostLSN == 0 {
		p.log.Warn("quorum lost: a record was not durable by its wait's deadline; waits fail at once until it is",
			zap.Uint64("lsn", lsn), zap.Uint64("durable", p.durable.Load()), zap.Int("w", p.cfg.W))
	}
	p.lostLSN = lsn
	p.broadcastLocked()
}

// noteWait folds a Wait's latency into waitEWMA (weight 1/8; a lost
// update between two Waits is harmless).
func (p *Primary) noteWait(d time.Duration) {
	old := p.waitEWMA.Load()
	p.waitEWMA.Store(old + (int64(d)-old)/8)
}

// broadcastLocked wakes every Wait (caller holds p.mu).
func (p *Primary) broadcastLocked() {
	close(p.durableCh)
	p.durableCh = make(chan struct{})
}

func (p *Primary) failLocked(err error) {
	if p.failed != nil {
		return
	}
	p.failed = err
	p.log.Error("primary stops shipping", zap.Error(err))
	p.broadcastLocked()
	p.cancel()
}

// fence turns the primary read-only for good: a replica holds a newer term.
func (p *Primary) fence(addr string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLocked(fmt.Errorf("%w: replica %s: %v", ErrFenced, addr, err))
}

// Done is closed when the primary stops shipping: fenced, closed or
// broken (Fenced says which).
func (p *Primary) Done() <-chan struct{} { return p.ctx.Done() }

// Fenced reports whether a newer term took the volume from this primary.
func (p *Primary) Fenced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Is(p.failed, ErrFenced)
}

// setAcked records a replica's durable position and advances Durable.
func (p *Primary) setAcked(l *link, lsn uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, durableBefore := l.acked, p.durable.Load()
	l.acked = lsn
	l.answered = time.Now()
	l.ackedLocked(lsn)
	p.advancePinLocked(l, lsn)
	acked := make([]uint64, len(p.links))
	for i, o := range p.links {
		acked[i] = o.acked
	}
	slices.Sort(acked)
	quorum := acked[len(acked)-p.cfg.W]
	if quorum > p.durable.Load() {
		p.durable.Store(quorum)
		if p.lostLSN != 0 && quorum >= p.lostLSN {
			p.log.Info("quorum back: the records a wait gave up on are durable; waits wait again",
				zap.Uint64("lsn", p.lostLSN), zap.Uint64("durable", quorum))
			p.lostLSN = 0
		}
		p.broadcastLocked()
	}
	if invariants {
		p.checkAcked(l, prev, lsn, durableBefore, acked)
	}
	p.trimLocked()
}

// trimLocked drops what every replica has (or needs no more), then the
// oldest records while the log is over its bound, except those an
// install's pin keeps (pin.go; their replicas will get a snapshot).
func (p *Primary) trimLocked() {
	low := p.head
	for _, l := range p.links {
		low = min(low, p.neededAfterLocked(l))
	}
	n := 0
	for ; n < len(p.entries); n++ {
		r := p.entries[n]
		if r.LSN > low && (p.logBytes <= p.cfg.MaxLogBytes || p.pinnedLocked(r.LSN)) {
			break
		}
		p.logBytes -= recordSize(r)
		p.entries[n] = nil
	}
	if n > 0 {
		p.entries = p.entries[n:]
		p.appended = p.appended[n:]
		p.first += uint64(n)
	}
	p.checkPinsLocked()
}

// records returns up to max records from lsn on (nil when lsn is past the
// head, or past what is readable: a data record not read yet and what
// follows it wait for readContents); ok is false when the log no longer
// reaches back to lsn.
func (p *Primary) records(lsn uint64, maxRecs int, maxBytes int64) (recs []*Record, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lsn > p.head {
		return nil, true
	}
	if lsn < p.first {
		return nil, false
	}
	if lsn > p.readable {
		return nil, true
	}
	var size int64
	end := p.readable + 1 - p.first // readable >= lsn >= first: in the log
	for i := lsn - p.first; i < end && len(recs) < maxRecs && size < maxBytes; i++ {
		recs = append(recs, p.entries[i])
		size += recordSize(p.entries[i])
	}
	return recs, true
}

// termAt is the term of the record at lsn in this primary's history.
func (p *Primary) termAt(lsn uint64) uint64 {
	if lsn > p.baseLSN {
		return p.term
	}
	return p.baseTerm
}

// ReplicaStatus is one replica as the primary sees it.
type ReplicaStatus struct {
	Addr      string
	Connected bool
	Acked     uint64 // highest lsn the replica has durably
	Lag       uint64 // records the replica lacks
	Resyncs   int    // snapshots installed on it by this primary
	// Installs counts the installs started (Resyncs those that ended
	// well); Overflows those the writes outran (pin.go); Repeats the
	// snapshots it needed again before it caught up after one: an install
	// loop, which only an overflow should cause.
	Installs, Overflows, Repeats int
	// Installing: an install or its catch-up keeps records in the log.
	Installing bool
	LastError  string
	// Quorum: a Wait sends to it at once (one of the W fastest lately);
	// otherwise it trails by up to ShipDelay.
	Quorum bool
	// AckLatency is the moving average from a send to its ack (it orders
	// the quorum; /metrics has the distribution,
	// spoolfs_replication_ack_seconds).
	AckLatency time.Duration
	// LastAnswer is when the replica last answered on this link: the
	// stream's handshake, an ack, or a probe (ProbeInterval).
	LastAnswer time.Time
}

// PrimaryStatus is what `spoolfs status` shows of a primary.
type PrimaryStatus struct {
	Volume   string
	Term     uint64
	Head     uint64 // last appended lsn
	LogFirst uint64 // first lsn the log holds (Head+1: empty)
	Durable  uint64
	W        int
	LogBytes int64
	Fenced   bool
	// QuorumLost: a Wait's deadline passed with its record not durable;
	// Waits fail at once until it is (Wait).
	QuorumLost bool
	// DataBytes counts the content bytes of the data records appended
	// (holes left out; once per record, each replica is sent them once);
	// DataRecords counts those records and PartialRecords the ones that
	// carried only the ranges changed (Record.Partial).
	DataBytes, DataRecords, PartialRecords uint64
	Err                                    string
	Replicas                               []ReplicaStatus
}

// Status reports the primary and each of its replicas.
func (p *Primary) Status() PrimaryStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PrimaryStatus{Volume: p.cfg.Volume, Term: p.term, Head: p.head, Durable: p.durable.Load(),
		W: p.cfg.W, LogBytes: p.logBytes, LogFirst: p.first, Fenced: errors.Is(p.failed, ErrFenced), QuorumLost: p.lostLSN != 0,
		DataBytes: p.dataBytes, DataRecords: p.dataRecords, PartialRecords: p.partialRecords}
	if p.failed != nil {
		st.Err = p.failed.Error()
	}
	for _, l := range p.links {
		rs := ReplicaStatus{Addr: l.addr, Connected: l.connected, Acked: l.acked, Resyncs: l.resyncs,
			Installs: l.installs, Overflows: l.overflows, Repeats: l.repeats, Installing: l.pin != nil,
			Quorum: slices.Contains(p.quorum, l) || p.cfg.W >= len(p.links), AckLatency: l.ackEWMA, LastAnswer: l.answered}
		if l.acked < p.head {
			rs.Lag = p.head - l.acked
		}
		if l.lastErr != nil {
			rs.LastError = l.lastErr.Error()
		}
		st.Replicas = append(st.Replicas, rs)
	}
	return st
}

// Lag is how far behind one replica is (Primary.Lags).
type Lag struct {
	Addr    string
	Records uint64 // records it lacks
	// Bytes is the size of the records it lacks that the log holds;
	// Seconds how long ago the oldest record it lacks was appended (the
	// oldest the log holds, when it lacks more). All 0 when it lacks
	// nothing.
	Bytes   int64
	Seconds float64
}

// Lags reports how far behind each replica is, in records, bytes and
// seconds (/metrics).
func (p *Primary) Lags() []Lag {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Lag, 0, len(p.links))
	for _, l := range p.links {
		lag := Lag{Addr: l.addr}
		if l.acked < p.head {
			lag.Records = p.head - l.acked
			lag.Bytes, lag.Seconds = p.lagLocked(l.acked)
		}
		out = append(out, lag)
	}
	return out
}

// lagLocked measures what a replica that holds up to acked lacks, in the
// bytes of the records the log holds after acked and the age of the
// oldest of them (caller holds p.mu).
func (p *Primary) lagLocked(acked uint64) (bytes int64, seconds float64) {
	i := 0
	if acked+1 > p.first {
		i = int(acked + 1 - p.first)
	}
	if i >= len(p.entries) {
		return 0, 0
	}
	for _, r := range p.entries[i:] {
		bytes += recordSize(r)
	}
	return bytes, time.Since(p.appended[i]).Seconds()
}

func (p *Primary) ackSummary() string {
	st := p.Status()
	s := ""
	for i, r := range st.Replicas {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s acked %d", r.Addr, r.Acked)
		if !r.Connected {
			s += " (down)"
		}
	}
	return s
}

// Drain sends everything to every replica and waits until each connected
// one holds the head, or ctx ends: a clean stop leaves no replica trailing
// (Wait needs only the quorum).
func (p *Primary) Drain(ctx context.Context) error {
	p.wakeAll()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		head, behind := p.head, 0
		for _, l := range p.links {
			if l.connected && l.acked < head {
				behind++
			}
		}
		p.mu.Unlock()
		if behind == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("replication: %d connected replicas still short of lsn %d (%s): %w", behind, head, p.ackSummary(), ctx.Err())
		}
	}
}

// Close stops shipping and closes the connections. Records not yet
// durable stay so; Wait fails with ErrClosed.
func (p *Primary) Close() error {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = ErrClosed
		p.broadcastLocked()
	}
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	for _, l := range p.links {
		_ = l.conn.Close()
	}
	return nil
}

// newPrimary builds a primary on recovered state; holders[i] says replica
// i holds the base already.
func newPrimary(cfg PrimaryConfig, conns []*grpc.ClientConn, term, baseTerm, baseLSN uint64, holders []bool) *Primary {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Primary{cfg: cfg, log: cfg.Log.With(zap.String("volume", cfg.Volume), zap.Uint64("term", term)),
		term: term, baseTerm: baseTerm, baseLSN: baseLSN, ctx: ctx, cancel: cancel,
		first: baseLSN + 1, head: baseLSN, readable: baseLSN, durableCh: make(chan struct{}),
		unreadCh: make(chan struct{}, 1)}
	p.durable.Store(baseLSN)
	now := time.Now()
	for i, c := range conns {
		l := &link{p: p, idx: i, addr: cfg.Replicas[i], conn: c, client: pb.NewReplicaClient(c), wake: make(chan struct{}, 1),
			answered: now} // recovery just heard every replica it opened on
		if holders[i] {
			l.acked, l.granted = baseLSN, true
		}
		p.links = append(p.links, l)
	}
	for _, l := range p.links {
		p.wg.Add(2)
		go l.run()
		go l.probe()
	}
	p.wg.Add(1)
	go p.readContents()
	return p
}

// testSkip drops, once, the record numbered testSkipLSN (tests provoke a
// gap with it).
func (p *Primary) testSkip(recs []*Record) []*Record {
	lsn := p.testSkipLSN.Load()
	if lsn == 0 {
		return recs
	}
	for i, r := range recs {
		if r.LSN == lsn && p.testSkipLSN.CompareAndSwap(lsn, 0) {
			return append(recs[:i:i], recs[i+1:]...)
		}
	}
	return recs
}
