package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound one run of a workload.
type Options struct {
	Workload Workload
	Clients  int           // concurrent clients, each in its own directory (>= 1)
	Duration time.Duration // stop after this long; 0: no time bound
	Count    int           // iterations per client at most; 0: no count bound
	// MaxFiles bounds the files a write4k run keeps (they stay until the
	// run ends): each client stops after MaxFiles/Clients of them (a spoolfs
	// volume held a descriptor per non-empty file before issue 13's arenas;
	// the bound keeps runs comparable with earlier figures). 0: no bound.
	MaxFiles int

	// Progress, when set, is called about every 100 ms during the timed
	// part with the iterations completed so far (all clients) and the
	// time since they started, from one goroutine.
	Progress func(ops uint64, elapsed time.Duration)

	// BeforeTimed and AfterTimed, when set, run right before the clients
	// start and right after the last one stopped, outside the setup and the
	// cleanup (the request-counting pass starts and stops tracing there).
	BeforeTimed func() error
	AfterTimed  func() error
}

func (o Options) validate() error {
	if o.Clients < 1 {
		return fmt.Errorf("clients must be at least 1, not %d", o.Clients)
	}
	if o.Duration <= 0 && o.Count <= 0 {
		return errors.New("a run needs a duration or a count bound")
	}
	if o.Duration < 0 || o.Count < 0 || o.MaxFiles < 0 {
		return errors.New("negative duration, count or file bound")
	}
	_, err := ParseWorkload(string(o.Workload))
	return err
}

// Result is what one run measured.
type Result struct {
	Workload Workload
	Clients  int
	Ops      uint64        // completed iterations, all clients together
	Elapsed  time.Duration // from the start signal until the last client stopped
	Lat      Hist          // latency of each iteration
	Steps    Steps         // latency of each fsync, close and rename
	CPU      CPUTimes      // set by Compare's timed runs
	// Timeline is the iteration count sampled every 100 ms of the timed
	// part, and at its end: throughput over time (Throughput).
	Timeline []Sample
	// Commits are the batches the replicas of a replicated system
	// committed (one fsync each) during the timed part, all together.
	Commits uint64
}

// OpsPerSec returns the throughput of the run.
func (r *Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// String is a one-line summary: ops/s and latency percentiles.
func (r *Result) String() string {
	return fmt.Sprintf("%s clients=%d ops=%d elapsed=%s ops/s=%.0f p50=%s p90=%s p99=%s max=%s",
		r.Workload, r.Clients, r.Ops, r.Elapsed.Round(time.Millisecond), r.OpsPerSec(),
		r.Lat.Percentile(0.50), r.Lat.Percentile(0.90), r.Lat.Percentile(0.99), r.Lat.Max())
}

var runSeq atomic.Uint64

// Run runs o.Workload with o.Clients clients in dir and returns what it
// measured. Each client works in its own subdirectory dir/cN; every file a
// run creates is removed before Run returns, also on failure, and so is
// every client directory it created (one that already existed stays). The
// first error of any client stops the run and is returned.
func Run(ctx context.Context, dir string, o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	prefix := fmt.Sprintf("r%d.%d", os.Getpid(), runSeq.Add(1))
	clients := make([]*client, o.Clients)
	var made []string // client directories this run created
	defer func() { cleanupRun(dir, o.Clients, prefix, made) }()
	for i := range clients {
		cdir := filepath.Join(dir, "c"+strconv.Itoa(i))
		err := os.Mkdir(cdir, 0o755)
		switch {
		case err == nil:
			made = append(made, cdir)
		case !errors.Is(err, os.ErrExist):
			return Result{}, fmt.Errorf("client directory: %w", err)
		}
		clients[i] = newClient(cdir, prefix)
	}
	o.Count = o.perClientCount()
	if o.BeforeTimed != nil {
		if err := o.BeforeTimed(); err != nil {
			return Result{}, fmt.Errorf("before the run: %w", err)
		}
	}
	res, err := runClients(ctx, clients, o)
	if o.AfterTimed != nil {
		if aerr := o.AfterTimed(); aerr != nil && err == nil {
			err = fmt.Errorf("after the run: %w", aerr)
		}
	}
	return res, err
}

// perClientCount is the count bound of each client, MaxFiles included.
func (o Options) perClientCount() int {
	if o.Workload != Write4K || o.MaxFiles <= 0 {
		return o.Count
	}
	n := (o.MaxFiles + o.Clients - 1) / o.Clients
	if o.Count > 0 && o.Count < n {
		return o.Count
	}
	return n
}

// runClients starts the clients together and waits for all of them.
func runClients(ctx context.Context, clients []*client, o Options) (Result, error) {
	var stop atomic.Bool
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hists := make([]Hist, len(clients))
	ops := make([]uint64, len(clients))
	errs := make([]error, len(clients))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ops[i], errs[i] = c.loop(o, &stop, &hists[i])
			if errs[i] != nil {
				stop.Store(true)
			}
		}()
	}
	go func() { // the time bound and cancellation
		var timeout <-chan time.Time
		if o.Duration > 0 {
			t := time.NewTimer(o.Duration)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-timeout:
		case <-ctx.Done():
		}
		stop.Store(true)
	}()
	t0 := time.Now()
	smp := startSampler(t0, o.Progress)
	for _, c := range clients {
		c.done = &smp.ops
	}
	close(start)
	wg.Wait()
	res := Result{Workload: o.Workload, Clients: len(clients), Elapsed: time.Since(t0)}
	res.Timeline = smp.finish()
	for i, c := range clients {
		res.Ops += ops[i]
		res.Lat.Merge(&hists[i])
		res.Steps.Merge(c.steps)
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s: %w", o.Workload, err)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// loop runs iterations until stop is set or the count bound is reached.
func (c *client) loop(o Options, stop *atomic.Bool, h *Hist) (uint64, error) {
	var n uint64
	for !stop.Load() && (o.Count == 0 || n < uint64(o.Count)) {
		t := time.Now()
		if err := c.iterate(o.Workload); err != nil {
			return n, err
		}
		h.Record(time.Since(t))
		n++
		c.done.Add(1)
	}
	return n, nil
}

// cleanupRun removes the files the run's clients left behind (those of
// write4k, and any of an iteration interrupted by an error), then the
// client directories the run made (if something else put a file there,
// it stays, and so does its directory).
func cleanupRun(dir string, clients int, prefix string, made []string) {
	for i := 0; i < clients; i++ {
		cdir := filepath.Join(dir, "c"+strconv.Itoa(i))
		names, _ := filepath.Glob(filepath.Join(cdir, prefix+"-*"))
		for _, n := range names {
			os.Remove(n)
		}
	}
	for _, d := range made {
		os.Remove(d)
	}
}
