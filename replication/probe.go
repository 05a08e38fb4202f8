package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Answering counts the replicas whose stream is open and that answered
// within d (an ack, a handshake or a probe): the replicas a write would
// reach now. Fewer than W means a Wait would run into its deadline; node's
// /readyz says so (docs/operations.md, "Health").
//
// A connection alone says little: a stopped process or a partition keeps
// it open, silent, until the keepalive ends it (10 s + 5 s); an idle
// volume's replicas send no acks. The probes (probe) bound the silence of
// a replica that answers to ProbeInterval plus one round trip.
func (p *Primary) Answering(d time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, n := time.Now(), 0
	for _, l := range p.links {
		if l.connected && now.Sub(l.answered) <= d {
			n++
		}
	}
	return n
}

// probe runs beside run for the primary's life: each ProbeInterval in
// which the replica said nothing, it asks the replica's gRPC health
// service (registered by ReplicaServer.Register) and notes an answer. A
// replica that does not serve the health service (an older version)
// answers Unimplemented, which is an answer too. A probe waits at most
// ProbeInterval and never blocks the stream (a unary call on the same
// connection).
func (l *link) probe() {
	defer l.p.wg.Done()
	iv := l.p.cfg.ProbeInterval
	client := grpc_health_v1.NewHealthClient(l.conn)
	tick := time.NewTicker(iv)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-l.p.ctx.Done():
			return
		}
		l.p.mu.Lock()
		quiet := time.Since(l.answered) >= iv
		l.p.mu.Unlock()
		if !quiet {
			continue
		}
		ctx, cancel := context.WithTimeout(l.p.ctx, iv)
		_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		cancel()
		if err == nil || status.Code(err) == codes.Unimplemented {
			l.p.mu.Lock()
			l.answered = time.Now()
			l.p.mu.Unlock()
		}
	}
}

// Unready says why the replica could not store records now, nil when it
// can: it is closed, its data directory is not writable (a file cannot be
// created in it: read-only remount, permissions), or a volume's storage
// failed and did not open again yet (usable retries it). node's /readyz
// of a replica process reports it.
func (s *ReplicaServer) Unready() error {
	s.mu.Lock()
	closed := s.closed
	vols := make([]*volume, 0, len(s.vols))
	for _, v := range s.vols {
		vols = append(vols, v)
	}
	s.mu.Unlock()
	if closed {
		return errors.New("replica closed")
	}
	if s.dir != "" {
		f, err := os.CreateTemp(s.dir, ".ready-*")
		if err != nil {
			return fmt.Errorf("data dir %s not writable: %w", s.dir, err)
		}
		f.Close()
		if err := os.Remove(f.Name()); err != nil {
			return fmt.Errorf("data dir %s: %w", s.dir, err)
		}
	}
	slices.SortFunc(vols, func(a, b *volume) int { return cmp.Compare(a.name, b.name) })
	for _, v := range vols {
		v.mu.Lock()
		err := v.usable()
		v.mu.Unlock()
		if err != nil {
			return fmt.Errorf("storage failed: %s", status.Convert(err).Message())
		}
	}
	return nil
}
