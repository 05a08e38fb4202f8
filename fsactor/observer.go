package fsactor

import (
	"context"
	"errors"
	"time"
)

// Observer is told what the actor measures as it happens: how long each
// FUSE op took, how each durability wait ended, how long a kernel
// notification queued. fsactor imports no metrics library
// (internal/layout): node hands it one (internal/metrics resolves a
// Prometheus histogram child per op up front), so an observation is an
// index into a slice and an atomic add — nothing allocates on the hot
// path (alloc_test.go).
//
// Methods are called from the actor, from task goroutines and from the
// notify workers at once: an Observer must be safe for concurrent use and
// must not block.
type Observer interface {
	// OpDone: an op of kind op (its name: OpNames()[op]) is answered d
	// after the actor read it from the device, errors included. Called
	// just before the reply is written, as the op is counted: a caller
	// that saw the reply sees it observed.
	OpDone(op int, d time.Duration)
	// WaitDone: the durability wait of an op of kind op ended with
	// outcome (its name: WaitOutcomes()[outcome]) after d.
	WaitDone(op int, outcome int, d time.Duration)
	// NotifyDone: a kernel notification was written (or failed) d after
	// the actor queued it.
	NotifyDone(d time.Duration)
	// LimitHit: an op answered ENOSPC because the volume ran out of limit
	// (its name: LimitNames()[limit]). Called on the actor.
	LimitHit(limit int)
}

// Outcomes of a durability wait (Observer.WaitDone), indices into
// WaitOutcomes.
const (
	WaitOK         = iota // the record reached W replicas
	WaitNotDurable        // flush timeout or no quorum: the caller got EIO
	WaitFenced            // a newer term took the volume: EIO, then EROFS
	numWaitOutcomes
)

// waitOutcomeNames are the label values of the outcomes.
var waitOutcomeNames = [numWaitOutcomes]string{"ok", "not_durable", "fenced"}

// WaitOutcomes names the outcomes of a durability wait, by index.
func WaitOutcomes() []string { return waitOutcomeNames[:] }

// OpNames names the op kinds, by the index Observer methods receive: the
// same names as OpCounts and the access log ("unknown" is index 0).
func OpNames() []string {
	names := make([]string, numKinds)
	for k := range numKinds {
		names[k] = k.String()
	}
	return names
}

// waitOutcome classifies the error Sink.Wait returned.
func waitOutcome(err error) int {
	switch {
	case err == nil:
		return WaitOK
	case errors.Is(err, ErrFenced):
		return WaitFenced
	}
	return WaitNotDurable
}

// nopObserver is the Observer of a Config that names none.
type nopObserver struct{}

func (nopObserver) OpDone(int, time.Duration)        {}
func (nopObserver) WaitDone(int, int, time.Duration) {}
func (nopObserver) NotifyDone(time.Duration)         {}
func (nopObserver) LimitHit(int)                     {}

// Memory is what a volume's actor holds in memory, in bytes.
type Memory struct {
	// Contents: the memfds of the files, as allocated (holes excluded).
	Contents int64
	// Snapshots: the memfds a streamed snapshot in progress kept of files
	// that changed since it was taken (copy on write).
	Snapshots int64
}

// Memory measures what the state holds (on the actor: fstat of each memfd
// a snapshot kept, a handful at most).
func (st *State) Memory() Memory {
	m := Memory{Contents: st.used}
	if st.snap != nil {
		for _, c := range st.snap.moved {
			if c.slot.a != nil {
				m.Snapshots += c.slot.size()
			} else if _, alloc, err := memfdStat(c.fd); err == nil {
				m.Snapshots += alloc
			}
		}
	}
	return m
}

// Memory asks the actor what it holds (State.Memory); ctx bounds the wait.
func (s *Server) Memory(ctx context.Context) (Memory, error) {
	var m Memory
	err := s.Do(ctx, func(st *State) { m = st.Memory() })
	return m, err
}
