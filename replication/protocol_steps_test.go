package replication

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// step does one random thing to the cluster.
func (s *schedule) step() {
	switch k := s.rng.IntN(100); {
	case k < 28:
		s.writeStep()
	case k < 36:
		s.unlinkStep()
	case k < 44:
		if i := s.rng.IntN(3); s.reps[i].srv != nil {
			s.note("crash r%d", i)
			s.crash(i)
		}
	case k < 52:
		s.restartStep()
	case k < 63:
		s.faultStep()
	case k < 70:
		s.isolateStep()
	case k < 74:
		s.note("heal all links")
		s.net.HealAll()
	case k < 82:
		if s.nodes < maxNodes-1 {
			s.openAsync()
		}
	case k < 85:
		s.closeStep()
	case k < 91:
		s.minorityStep()
	default:
		time.Sleep(time.Duration(s.rng.IntN(3000)) * time.Microsecond)
	}
}

// pick returns one of the open primaries, the newest most often.
func (s *schedule) pick() *writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var open []*writer
	for _, w := range s.writers {
		if !w.closed {
			open = append(open, w)
		}
	}
	if len(open) == 0 {
		return nil
	}
	if s.rng.IntN(3) > 0 {
		return open[len(open)-1]
	}
	return open[s.rng.IntN(len(open))]
}

func (s *schedule) writeStep() {
	w := s.pick()
	if w == nil {
		return
	}
	s.names++
	name := fmt.Sprintf("m%d", s.rng.IntN(6))
	content := fmt.Sprintf("%s.%d", w.node, s.names)
	lsn := w.write(name, content)
	s.note("%s: write %s=%s at lsn %d", w.node, name, content, lsn)
	s.wait(w, lsn)
}

func (s *schedule) unlinkStep() {
	w := s.pick()
	if w == nil {
		return
	}
	names := w.names()
	if len(names) == 0 {
		return
	}
	name := names[s.rng.IntN(len(names))]
	if lsn, ok := w.unlink(name); ok {
		s.note("%s: unlink %s at lsn %d", w.node, name, lsn)
		s.wait(w, lsn)
	}
}

// wait waits for lsn in the background, as a FLUSH would; a nil answer
// makes the record acknowledged.
func (s *schedule) wait(w *writer, lsn uint64) {
	timeout := time.Duration(20+s.rng.IntN(400)) * time.Millisecond
	s.waits.Add(1)
	go func() {
		defer s.waits.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := w.p.Wait(ctx, lsn)
		if err == nil {
			s.o.ack(w.p.Term(), lsn)
			s.note("%s: lsn %d acknowledged", w.node, lsn)
		}
	}()
}

func (s *schedule) restartStep() {
	i := s.rng.IntN(3)
	if s.reps[i].srv != nil {
		return
	}
	s.note("restart r%d", i)
	if err := s.start(i); err != nil {
		s.fail(err)
	}
}

// faultStep sets a fault on the link of one primary to one replica.
func (s *schedule) faultStep() {
	node := fmt.Sprintf("p%d", 1+s.rng.IntN(s.nodes))
	rep := fmt.Sprintf("r%d", s.rng.IntN(3))
	switch s.rng.IntN(6) {
	case 0:
		s.note("drop %s-%s", node, rep)
		s.net.Drop(node, rep)
	case 1:
		s.note("cut %s-%s", node, rep)
		s.net.Cut(node, rep)
	case 2:
		s.note("pause %s-%s", node, rep)
		s.net.Pause(node, rep)
	case 3:
		d := time.Duration(s.rng.IntN(20)) * time.Millisecond
		s.note("delay %s-%s by %v", node, rep, d)
		s.net.Delay(node, rep, d)
	case 4:
		d := time.Duration(s.rng.IntN(80)) * time.Millisecond
		s.note("strand %s-%s for %v", node, rep, d)
		s.net.Strand(node, rep, d)
	default:
		s.note("heal %s-%s", node, rep)
		s.net.Heal(node, rep)
	}
}

// maxNodes bounds the primaries of a schedule, the final one included.
const maxNodes = 6

// isolateStep cuts one replica off from every primary, present and
// future, or heals it.
func (s *schedule) isolateStep() {
	i := s.rng.IntN(3)
	heal := s.rng.IntN(3) == 0
	s.note("%s r%d", map[bool]string{true: "reconnect", false: "isolate"}[heal], i)
	for n := 1; n <= maxNodes; n++ {
		node, rep := fmt.Sprintf("p%d", n), fmt.Sprintf("r%d", i)
		if heal {
			s.net.Heal(node, rep)
		} else {
			s.net.Cut(node, rep)
		}
	}
}

// minorityStep tests quorum intersection head on: the newest primary
// reaches one replica only and writes; then that replica is cut off from
// everyone, the other two come back, and a new primary opens. With W = 2
// the writes cannot have been acknowledged; a primary that counted a
// minority would have them lost by the new one.
func (s *schedule) minorityStep() {
	w := s.pick()
	if w == nil || s.nodes >= maxNodes-1 {
		return
	}
	a := s.rng.IntN(3)
	s.note("%s: reaches r%d only", w.node, a)
	for i := range 3 {
		if i != a {
			s.net.Cut(w.node, fmt.Sprintf("r%d", i))
		}
	}
	s.writeStep()
	time.Sleep(time.Duration(s.rng.IntN(20)) * time.Millisecond)
	s.note("r%d cut off from every primary; the others back", a)
	for n := 1; n <= maxNodes; n++ {
		for i := range 3 {
			node, rep := fmt.Sprintf("p%d", n), fmt.Sprintf("r%d", i)
			if i == a {
				s.net.Cut(node, rep)
			} else {
				s.net.Heal(node, rep)
			}
		}
	}
	s.openAsync()
}

// closeStep closes a primary that is not the newest (a node that stops).
func (s *schedule) closeStep() {
	w := s.pick()
	if w == nil {
		return
	}
	s.mu.Lock()
	last := w == s.writers[len(s.writers)-1]
	if !last {
		w.closed = true
	}
	s.mu.Unlock()
	if !last {
		s.note("%s: close", w.node)
		_ = w.p.Close()
	}
}

// finish heals everything, lets every wait end, closes the primaries and
// recovers the volume once more: every acknowledged record must be there,
// and the new primary must make a record durable.
func (s *schedule) finish() error {
	s.note("heal all, restart all")
	s.net.HealAll()
	for i := range s.reps {
		if s.reps[i].srv == nil {
			if err := s.start(i); err != nil {
				return err
			}
		}
	}
	s.opening.Wait()
	s.waits.Wait()
	if err := s.newestServes(); err != nil {
		return err
	}
	s.closeAll()
	if err := s.violation(); err != nil {
		return err
	}
	if err := s.checkViews(); err != nil {
		return err
	}
	// A primary that took its term from two replicas while the third
	// holds a higher one (granted to an OpenPrimary that then failed, its
	// answer lost) is fenced by that replica at its first write: a node
	// opens the volume again, and so does this.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.finalPrimary(); err == nil || !errors.Is(err, ErrFenced) {
			break
		}
	}
	if err == nil {
		err = s.followerCaughtUp()
	}
	return err
}

// finalPrimary opens one more primary (its recovery checked by the
// oracle) and makes a record durable.
func (s *schedule) finalPrimary() error {
	s.note("final recovery")
	cfg := s.config()
	cfg.AcquireTimeout = 20 * time.Second
	w, err := s.open(cfg)
	if err != nil {
		if v := s.violation(); v != nil {
			return v
		}
		return fmt.Errorf("final OpenPrimary with every replica up and every link healed: %w", err)
	}
	lsn := w.write("final", "done")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.p.Wait(ctx, lsn); err != nil {
		s.note("%s: final wait: %v", w.node, err)
		s.closeAll()
		return fmt.Errorf("final primary cannot make lsn %d durable: %w", lsn, err)
	}
	return nil
}

// newestServes: with every fault healed, the newest primary still open
// makes a new record durable, unless a newer term fenced it.
func (s *schedule) newestServes() error {
	s.mu.Lock()
	var w *writer
	for _, o := range s.writers {
		if !o.closed {
			w = o
		}
	}
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	lsn := w.write("after-heal", w.node)
	s.note("%s: write after-heal at lsn %d", w.node, lsn)
	// A primary that lost its quorum fails Waits at once until the
	// record that timed out is durable: ask again until the deadline.
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = w.p.Wait(ctx, lsn)
		cancel()
		if err == nil || errors.Is(err, ErrFenced) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	switch {
	case err == nil:
		s.o.ack(w.p.Term(), lsn)
		s.note("%s: lsn %d acknowledged", w.node, lsn)
	case errors.Is(err, ErrFenced):
		s.note("%s: fenced", w.node)
	default:
		return fmt.Errorf("%s (term %d), not fenced, cannot make lsn %d durable with every fault healed: %w (status %+v)", w.node, w.p.Term(), lsn, err, w.p.Status())
	}
	return nil
}

// checkViews: every closed primary released each content view once.
func (s *schedule) checkViews() error {
	s.mu.Lock()
	ws := s.writers
	s.mu.Unlock()
	for _, w := range ws {
		if err := w.checkViews(); err != nil {
			return err
		}
	}
	return nil
}

func (s *schedule) closeAll() {
	s.mu.Lock()
	ws := s.writers
	s.mu.Unlock()
	for _, w := range ws {
		s.mu.Lock()
		closed := w.closed
		w.closed = true
		s.mu.Unlock()
		if !closed {
			_ = w.p.Close()
		}
	}
}

// teardown stops everything the schedule started.
func (s *schedule) teardown() {
	if s.fol != nil {
		s.fol.f.Close()
	}
	s.opening.Wait()
	s.closeAll()
	s.waits.Wait()
	for i := range s.reps {
		if s.reps[i] != nil {
			s.crash(i)
		}
	}
	s.net.Close()
}
