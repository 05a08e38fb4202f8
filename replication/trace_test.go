package replication

import (
	"slices"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestBatchLogNamesRequests: the request id of each record (Record.Req)
// crosses the wire with it, and every replica logs, at debug level, the
// batch that made it durable: LSNs, the request ids (each once, in LSN
// order, 0 left out) and how long the fsync took.
func TestBatchLogNamesRequests(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	c := makeCluster(t, 3)
	for i := range c.reps {
		c.kill(i)
	}
	c.log = zap.New(core)
	for i := range c.reps {
		c.restart(i)
	}
	cfg := c.primaryConfig(vol)
	cfg.Log = zap.NewNop()
	p, m := c.openPrimary(cfg)
	ino := m.newIno()
	m.append(&Record{Req: 10, Op: OpCreate, Ino: ino, Parent: 1, Name: "msg", Attr: fileAttr(0)})
	m.append(&Record{Op: OpSetattr, Ino: ino, Attr: fileAttr(0)}) // an internal event's record: no id
	lsn := m.append(&Record{Req: 14, Op: OpData, Ino: ino, Attr: fileAttr(5), Data: []byte("hello")})
	mustWait(t, p, lsn, 20*time.Second)
	c.waitForLSN(vol, lsn)

	// Per replica: the request ids its batch lines name, and whether each
	// line covered its LSNs and timed its fsync.
	testsupport.WaitFor(t, 10*time.Second, "every replica's batch lines", func() bool {
		seen := map[int][]uint64{}
		for _, e := range logs.FilterMessage("batch durable").All() {
			f := e.ContextMap()
			r := int(f["replica"].(int64))
			first, last := f["first_lsn"].(uint64), f["last_lsn"].(uint64)
			if f["volume"] != vol || first > last || f["fsync"].(time.Duration) <= 0 {
				t.Fatalf("batch line %v: want volume %s, first_lsn <= last_lsn, an fsync time", f, vol)
			}
			for _, id := range f["reqs"].([]any) {
				seen[r] = append(seen[r], id.(uint64))
			}
		}
		for i := range c.reps {
			if !slices.Equal(seen[i], []uint64{10, 14}) {
				t.Logf("replica %d logged ids %v so far, want [10 14]", i, seen[i])
				return false
			}
		}
		return true
	})
}
