//go:build invariants

package replication

import "fmt"

// checkPinsLocked panics when a pin's INVARIANT (pin.go) is broken: a
// record above its lsn missing from the log, or its bytes not their sum
// (caller holds p.mu). Built with -tags invariants only: it walks the log.
func (p *Primary) checkPinsLocked() {
	for _, l := range p.links {
		pin := l.pin
		if pin == nil {
			continue
		}
		if pin.lsn < p.head && pin.lsn+1 < p.first {
			panic(fmt.Sprintf("replication: pin of %s at lsn %d but the log starts at %d", l.addr, pin.lsn, p.first))
		}
		var sum int64
		for _, r := range p.entries {
			if r.LSN > pin.lsn {
				sum += recordSize(r)
			}
		}
		if sum != pin.bytes {
			panic(fmt.Sprintf("replication: pin of %s counts %d bytes above lsn %d, the log holds %d", l.addr, pin.bytes, pin.lsn, sum))
		}
	}
}
