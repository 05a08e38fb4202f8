package replication

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/faultnet"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	flagSchedules = flag.Int("schedules", 0, "TestProtocolRandom: number of schedules (0: the default for the mode)")
	flagSeed      = flag.Uint64("seed", 0, "TestProtocolRandom: replay the schedule with this seed alone")
	flagWorkers   = flag.Int("protocol-workers", 4, "TestProtocolRandom: schedules run at once")
	flagBudget    = flag.Duration("protocol-budget", 0, "TestProtocolRandom: stop starting schedules after this long (0: 60s by default, none with -schedules)")
)

// TestProtocolRandom drives seeded schedules of writes, waits, replica
// crashes and restarts, link faults (resets, partitions, blackholes,
// delays, stranded connections whose bytes arrive after the reconnection)
// and competing primaries against three real ReplicaServers (real gRPC
// over faultnet, real buntdb files on /dev/shm) and checks, at every
// recovery and once more at the end, the promise: every record whose Wait
// returned nil is in the state a later OpenPrimary recovers, and that
// state is exactly the one its position names (protocol_model_test.go).
//
// A seed names a schedule of actions, not an interleaving: a failure found
// with one seed replays with -seed, usually but not always the same way.
func TestProtocolRandom(t *testing.T) {
	n, budget := *flagSchedules, *flagBudget
	if n == 0 {
		n = 5000
		if budget == 0 {
			budget = 60 * time.Second
		}
		if testing.Short() {
			n = 200
		}
	}
	base := rand.Uint64()
	if *flagSeed != 0 {
		base, n = *flagSeed, 1
	}
	t.Logf("seeds %d .. %d (replay one with -run TestProtocolRandom -seed N)", base, base+uint64(n)-1)
	root := shmDir(t)
	var next, done atomic.Int64
	var failed atomic.Bool
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < max(1, min(*flagWorkers, n)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && (budget == 0 || time.Since(start) < budget) {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				seed := base + uint64(i)
				if err := runSchedule(t, filepath.Join(root, fmt.Sprint(seed)), seed); err != nil {
					failed.Store(true)
					t.Errorf("seed %d: %v", seed, err)
					return
				}
				if d := done.Add(1); d%500 == 0 {
					t.Logf("%d schedules, %.1f/s", d, float64(d)/time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d schedules in %v: %.1f schedules/s", done.Load(), el.Round(time.Millisecond), float64(done.Load())/el.Seconds())
}

// shmDir is a directory on a tmpfs (fsync is cheap there), removed when
// the test ends.
func shmDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "spoolfs-protocol-")
		if err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// schedule is one run: a cluster, its primaries, the oracle, a trace.
type schedule struct {
	rng   *rand.Rand
	began time.Time
	dir   string
	net   *faultnet.Network
	reps  [3]*protoReplica
	o     *oracle
	nodes int // primaries opened so far (names p1, p2, ...)

	mu      sync.Mutex
	writers []*writer // opened primaries, newest last
	trace   []string
	err     error // the first violation found
	waits   sync.WaitGroup
	opening sync.WaitGroup
	names   int
	fol     *protoFollower // nil: this schedule has none (protocol_follow_test.go)
}

type protoReplica struct {
	addr string
	dir  string
	srv  *ReplicaServer // nil while down
	g    *grpc.Server
	lis  net.Listener // closed by crash too: Stop before Serve began leaves it open
}

const protoVolume = "v"

func runSchedule(t *testing.T, dir string, seed uint64) (err error) {
	s := &schedule{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dir: dir, net: faultnet.New(), o: newOracle(), began: time.Now()}
	defer func() {
		s.teardown()
		_ = os.RemoveAll(dir)
		if err != nil {
			err = fmt.Errorf("%w\ntrace:\n  %s", err, strings.Join(s.trace, "\n  "))
		}
	}()
	for i := range s.reps {
		s.reps[i] = &protoReplica{addr: fmt.Sprintf("r%d", i), dir: filepath.Join(dir, fmt.Sprintf("r%d", i))}
		if err := s.start(i); err != nil {
			return err
		}
	}
	cfg := s.config()
	cfg.AcquireTimeout = 20 * time.Second // nothing is broken yet: it must work
	if _, err := s.open(cfg); err != nil {
		return fmt.Errorf("first primary: %w", err)
	}
	if s.rng.IntN(2) == 0 {
		if err := s.startFollower(t); err != nil {
			return err
		}
	}
	steps := 8 + s.rng.IntN(16)
	for range steps {
		s.step()
		time.Sleep(time.Duration(s.rng.IntN(2000)) * time.Microsecond)
		if err := s.violation(); err != nil {
			return err
		}
	}
	err = s.finish()
	if *flagSeed != 0 {
		t.Logf("trace:\n  %s", strings.Join(s.trace, "\n  "))
	}
	return err
}

func (s *schedule) note(format string, args ...any) {
	s.mu.Lock()
	s.trace = append(s.trace, fmt.Sprintf("%7.1fms ", float64(time.Since(s.began).Microseconds())/1000)+fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *schedule) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *schedule) violation() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// start serves replica i from its directory.
func (s *schedule) start(i int) error {
	r := s.reps[i]
	srv, err := NewReplicaServer(r.dir, zap.NewNop(), withWatchHeartbeat(protoHeartbeat))
	if err != nil {
		return fmt.Errorf("replica %d: %w", i, err)
	}
	lis, err := s.net.Listen(r.addr)
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("replica %d: %w", i, err)
	}
	g := grpc.NewServer(ServerOptions()...)
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	r.srv, r.g, r.lis = srv, g, lis
	return nil
}

// crash stops replica i abruptly: its connections drop, its files close.
func (s *schedule) crash(i int) {
	r := s.reps[i]
	if r.srv == nil {
		return
	}
	s.net.ResetTo(r.addr) // a dead process's sockets
	r.g.Stop()
	_ = r.lis.Close()
	_ = r.srv.Close()
	r.srv, r.g, r.lis = nil, nil, nil
}

// config is a primary's configuration: fast retries, small timeouts,
// and sometimes a log so small that replicas need snapshots. Only the
// driver calls it (it draws from the schedule's rng).
func (s *schedule) config() PrimaryConfig {
	s.nodes++
	node := fmt.Sprintf("p%d", s.nodes)
	bo := backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1.6, MaxDelay: 20 * time.Millisecond}
	cfg := PrimaryConfig{Volume: protoVolume, NodeID: node, Replicas: []string{"passthrough:///r0", "passthrough:///r1", "passthrough:///r2"},
		W: 2, AcquireTimeout: time.Duration(200+s.rng.IntN(800)) * time.Millisecond, CallTimeout: 300 * time.Millisecond,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Log: zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(s.net.Dialer(node)),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 300 * time.Millisecond}),
		}}
	if s.rng.IntN(2) == 0 {
		cfg.ShipDelay = -1
	}
	if s.rng.IntN(3) == 0 {
		cfg.MaxLogBytes = 400 // two or three records: lagging replicas get snapshots
	}
	return cfg
}

// open makes a new primary (OpenPrimary) and checks what it recovered.
func (s *schedule) open(cfg PrimaryConfig) (*writer, error) {
	node := cfg.NodeID
	p, snap, err := OpenPrimary(context.Background(), cfg)
	if err != nil {
		s.note("%s: open failed: %v", node, err)
		return nil, err
	}
	h, err := s.o.recovered(p.Term(), p.baseTerm, snap)
	s.note("%s: term %d recovered lsn %d of term %d", node, p.Term(), snap.LSN, p.baseTerm)
	if err != nil {
		_ = p.Close()
		s.fail(err)
		return nil, err
	}
	w := newWriter(s.o, h, p, snap, node)
	s.mu.Lock()
	s.writers = append(s.writers, w)
	s.mu.Unlock()
	return w, nil
}

// openAsync starts a competing primary while the others go on.
func (s *schedule) openAsync() {
	cfg := s.config()
	s.note("%s: opening", cfg.NodeID)
	s.opening.Add(1)
	go func() {
		defer s.opening.Done()
		_, _ = s.open(cfg)
	}()
}
