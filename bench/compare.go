package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
)

// CompareConfig describes one interleaved comparison.
type CompareConfig struct {
	Suite     string       // for the report
	Command   string       // the command line that ran it, for the report
	Systems   []SystemSpec // in the order they run within a round
	Workloads []Workload
	Clients   []int
	Rounds    int           // timed runs of each system per (workload, clients); medians are taken over them
	Duration  time.Duration // of each timed run
	Warmup    time.Duration // one untimed run per system before each cell's first round; 0: none
	MaxOps    int           // per client and run: a bound on top of Duration
	MaxFiles  int           // files a write4k run may keep (Options.MaxFiles)

	// CountIters is the number of iterations per client of the untimed
	// request-counting pass (0: no pass); it runs with each of CountClients.
	CountIters   int
	CountClients []int

	SpoolfsBin string
	Progress   io.Writer // one line per run; nil: none
}

// LocalSuite returns the configuration of `bench compare --suite local`:
// tmpfs, the memfs sample (in this process, and in its own process) and
// spoolfs --local (plus the given variants), 1 and 8 clients, every
// workload, medians of 5 rounds.
func LocalSuite(variants []SystemSpec) CompareConfig {
	systems := []SystemSpec{
		{Name: "tmpfs", Kind: KindTmpfs},
		{Name: "memfs", Kind: KindMemfs},
		// The same sample in its own process, as it is usually run: the
		// in-process one shares this process's Go runtime with the clients.
		{Name: "memfs-proc", Kind: KindMemfs, Args: []string{MemfsProcess}},
		{Name: "spoolfs", Kind: KindSpoolfs},
	}
	return CompareConfig{
		Suite:        "local",
		Systems:      append(systems, variants...),
		Workloads:    Workloads,
		Clients:      []int{1, 8},
		Rounds:       5,
		Duration:     2 * time.Second,
		Warmup:       500 * time.Millisecond,
		MaxOps:       2_000_000,
		MaxFiles:     10_000,
		CountIters:   300,
		CountClients: []int{1, 8},
	}
}

// Quick shortens c to a smoke run: one short round, a few counted iterations.
func (c *CompareConfig) Quick() {
	c.Rounds = 1
	c.Duration = 100 * time.Millisecond
	c.Warmup = 0
	c.MaxOps = 5000
	c.MaxFiles = 1000
	c.CountIters = 10
	c.CountClients = []int{1}
}

func (c *CompareConfig) validate() error {
	switch {
	case len(c.Systems) == 0:
		return errors.New("no systems to compare")
	case len(c.Workloads) == 0 || len(c.Clients) == 0:
		return errors.New("no workloads or no client counts")
	case c.Rounds < 1:
		return fmt.Errorf("rounds must be at least 1, not %d", c.Rounds)
	case c.Duration <= 0:
		return errors.New("the duration of a run must be positive")
	}
	seen := map[string]bool{}
	for _, s := range c.Systems {
		if seen[s.Name] {
			return fmt.Errorf("two systems are called %q", s.Name)
		}
		seen[s.Name] = true
	}
	for _, n := range c.Clients {
		if n < 1 {
			return fmt.Errorf("client count %d: must be at least 1", n)
		}
	}
	return nil
}

// CellKey names one measured combination.
type CellKey struct {
	System   string
	Workload Workload
	Clients  int
}

// Cell holds the timed runs of one combination.
type Cell struct {
	Runs []*Result // by round; nil where the run failed or did not happen
	Err  error     // the first failure; later rounds of the cell were skipped
}

// Rates returns ops/s by round, NaN where there is no run.
func (c *Cell) Rates() []float64 {
	rates := nanSlice(len(c.Runs))
	for i, r := range c.Runs {
		if r != nil {
			rates[i] = r.OpsPerSec()
		}
	}
	return rates
}

// MedianRate returns the median of the rounds that succeeded (NaN if none).
func (c *Cell) MedianRate() float64 { return median(c.Rates()) }

// MedianRun returns the run whose rate is closest to the median (nil if none).
func (c *Cell) MedianRun() *Result {
	m := c.MedianRate()
	var best *Result
	for _, r := range c.Runs {
		if r != nil && (best == nil || math.Abs(r.OpsPerSec()-m) < math.Abs(best.OpsPerSec()-m)) {
			best = r
		}
	}
	return best
}

// Requests is what the request-counting pass found for one combination.
type Requests struct {
	Ops    uint64 // iterations that ran while tracing
	Counts RequestCounts
	Err    error
}

// PerOp returns the FUSE requests per iteration.
func (r *Requests) PerOp() float64 {
	if r == nil || r.Ops == 0 {
		return math.NaN()
	}
	return float64(r.Counts.Total()) / float64(r.Ops)
}

// SystemInfo is a system as the report shows it.
type SystemInfo struct {
	Name, Kind, Describe string
	FUSE                 bool
	Variant              bool // a memfs or spoolfs with knobs turned (Args)
	ProcessOnly          bool // a memfs whose only knob is "process": the sample as is, in its own process
	MountErr             error
}

// Report is the result of a comparison.
type Report struct {
	Config   CompareConfig
	Started  time.Time
	Finished time.Time
	Machine  Machine
	// LoadStart and LoadEnd are the machine's load average around the run.
	LoadStart, LoadEnd string
	Systems            []SystemInfo
	Cells              map[CellKey]*Cell
	Requests           map[CellKey]*Requests
	CountErr           error // why requests were not counted, if they were not
	Err                error // why the comparison stopped early, if it did
}

// Compare mounts every system, runs the interleaved rounds and the request
// count, and unmounts everything before it returns, also on failure or when
// ctx is cancelled (a Ctrl-C). A system that cannot be mounted or a run that
// fails is recorded in the report and the rest goes on; the error return is
// for what stops the whole comparison.
func Compare(ctx context.Context, cfg CompareConfig) (rep *Report, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rep = &Report{Config: cfg, Started: time.Now(), Machine: DescribeMachine(), LoadStart: LoadAvg(),
		Cells: map[CellKey]*Cell{}, Requests: map[CellKey]*Requests{}}
	if stale, err := cleanStaleMounts(); err != nil {
		cfg.progress("cleaning stale bench mounts: %v", err)
	} else if len(stale) > 0 {
		cfg.progress("unmounted %d stale mounts of a dead bench process: %v", len(stale), stale)
	}
	base, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", baseDirPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("bench directory: %w", err)
	}
	mounted := cfg.mountAll(ctx, base, rep)
	defer func() {
		if uerr := unmountAll(mounted); uerr != nil {
			err = errors.Join(err, uerr)
		} else {
			os.RemoveAll(base)
		}
		rep.Finished, rep.LoadEnd = time.Now(), LoadAvg()
	}()
	if err := cfg.runRounds(ctx, mounted, rep); err != nil {
		rep.Err = err
		return rep, err
	}
	if err := cfg.countRequests(ctx, mounted, rep); err != nil {
		rep.Err = err
		return rep, err
	}
	return rep, nil
}

// mounted is a system and where it is mounted.
type mounted struct {
	sys System
	dir string
}

func (c *CompareConfig) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// mountAll mounts each system under base; failures are recorded in rep.
func (c *CompareConfig) mountAll(ctx context.Context, base string, rep *Report) []mounted {
	var out []mounted
	for _, spec := range c.Systems {
		sys, err := NewSystem(spec, c.SpoolfsBin)
		info := SystemInfo{Name: spec.Name, Kind: spec.Kind, Variant: len(spec.Args) > 0,
			ProcessOnly: spec.Kind == KindMemfs && slices.Equal(spec.Args, []string{MemfsProcess})}
		if err == nil {
			info.Describe, info.FUSE = sys.Describe(), sys.FUSE()
			dir := filepath.Join(base, spec.Name)
			if err = os.Mkdir(dir, 0o755); err == nil {
				err = sys.Mount(ctx, dir)
			}
			if err == nil {
				out = append(out, mounted{sys: sys, dir: dir})
				c.progress("mounted %s at %s", spec.Name, dir)
			}
		}
		if err != nil {
			info.MountErr = err
			c.progress("%s: not measured: %v", spec.Name, err)
		}
		rep.Systems = append(rep.Systems, info)
	}
	return out
}

// unmountAll unmounts in reverse order and joins the errors.
func unmountAll(ms []mounted) error {
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		if err := ms[i].sys.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ms[i].sys.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// runRounds runs, for each (workload, clients), R rounds of every system
// in turn: A, B, C, A, B, C...
func (c *CompareConfig) runRounds(ctx context.Context, ms []mounted, rep *Report) error {
	for _, w := range c.Workloads {
		for _, n := range c.Clients {
			if err := c.warmup(ctx, ms, w, n); err != nil {
				return err
			}
			for r := 0; r < c.Rounds; r++ {
				for _, m := range ms {
					if err := c.timedRun(ctx, m, w, n, r, rep); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func (c *CompareConfig) warmup(ctx context.Context, ms []mounted, w Workload, n int) error {
	if c.Warmup <= 0 {
		return nil
	}
	for _, m := range ms {
		wd := watch(m.sys, m.dir, c.Warmup+runGrace)
		_, err := Run(ctx, m.dir, Options{Workload: w, Clients: n, Duration: c.Warmup, Count: c.MaxOps, MaxFiles: c.MaxFiles})
		err = errors.Join(err, wd.stop())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			c.progress("warm-up %s %s c=%d: %v", m.sys.Name(), w, n, err)
		}
	}
	return nil
}

// timedRun runs one round of one system and records it; only a cancelled
// context is returned as an error.
func (c *CompareConfig) timedRun(ctx context.Context, m mounted, w Workload, n, round int, rep *Report) error {
	key := CellKey{System: m.sys.Name(), Workload: w, Clients: n}
	cell := rep.Cells[key]
	if cell == nil {
		cell = &Cell{Runs: make([]*Result, c.Rounds)}
		rep.Cells[key] = cell
	}
	if cell.Err != nil {
		return nil
	}
	cpu := newCPUMeter(m.sys)
	wd := watch(m.sys, m.dir, c.Duration+runGrace)
	res, err := Run(ctx, m.dir, Options{Workload: w, Clients: n, Duration: c.Duration, Count: c.MaxOps,
		MaxFiles: c.MaxFiles, BeforeTimed: cpu.start, AfterTimed: cpu.stop})
	err = errors.Join(err, wd.stop())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.CPU, res.Commits = cpu.got, cpu.gotCommits
	if err != nil {
		cell.Err = err
		c.progress("%-14s %-8s c=%d round %d: FAILED: %v", key.System, w, n, round+1, err)
		return nil
	}
	cell.Runs[round] = &res
	c.progress("%-14s %-8s c=%d round %d: %s", key.System, w, n, round+1, res.String())
	return nil
}

// countLimit bounds one run of the request-counting pass (count-bounded only).
const countLimit = 2 * time.Minute

// countRequests runs the untimed pass that counts FUSE requests per op.
func (c *CompareConfig) countRequests(ctx context.Context, ms []mounted, rep *Report) error {
	if c.CountIters <= 0 || !anyFUSE(ms) {
		return nil
	}
	tr, err := OpenTracer()
	if err != nil {
		rep.CountErr = err
		c.progress("FUSE requests not counted: %v", err)
		return nil
	}
	defer tr.Close()
	for _, m := range ms {
		if !m.sys.FUSE() {
			continue
		}
		for _, w := range c.Workloads {
			for _, n := range c.CountClients {
				if err := c.countOne(ctx, tr, m, w, n, rep); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *CompareConfig) countOne(ctx context.Context, tr *Tracer, m mounted, w Workload, n int, rep *Report) error {
	key := CellKey{System: m.sys.Name(), Workload: w, Clients: n}
	req := &Requests{}
	rep.Requests[key] = req
	e, ok, err := findMount(m.dir)
	if err != nil || !ok {
		req.Err = fmt.Errorf("mount of %s not found: %v", m.dir, err)
		return nil
	}
	wd := watch(m.sys, m.dir, countLimit)
	res, err := Run(ctx, m.dir, Options{Workload: w, Clients: n, Count: c.CountIters,
		BeforeTimed: func() error { return tr.Start(e.Major, e.Minor) },
		AfterTimed: func() error {
			counts, err := tr.Stop()
			req.Counts = counts
			return err
		}})
	err = errors.Join(err, wd.stop())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	req.Ops, req.Err = res.Ops, err
	if err != nil {
		c.progress("%-14s %-8s c=%d requests: FAILED: %v", key.System, w, n, err)
	} else {
		c.progress("%-14s %-8s c=%d requests: %.1f per op", key.System, w, n, req.PerOp())
	}
	return nil
}

func anyFUSE(ms []mounted) bool {
	for _, m := range ms {
		if m.sys.FUSE() {
			return true
		}
	}
	return false
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// median returns the median of the values that are not NaN (NaN if none).
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
