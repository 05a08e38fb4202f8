package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoolfs/spoolfs/bench"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

// benchFlags holds the flags of `spoolfs bench DIR`.
type benchFlags struct {
	workload string
	clients  int
	duration time.Duration
	count    int
	maxFiles int
	json     bool
	plot     string
}

func newBenchCmd() *cobra.Command {
	f := &benchFlags{}
	c := &cobra.Command{
		Use:   "bench [flags] DIR",
		Short: "Run one spool workload against any directory; `bench compare` runs the side-by-side suite",
		Long: `Run a workload with N clients against DIR (any filesystem), each client in
its own subdirectory DIR/cN, and print ops/s and latency percentiles. The run
stops after --duration or after --count iterations per client, whichever
comes first; every file it created is removed at the end.

Workloads:
  meta     create an empty file, stat it, unlink it
  write4k  create a file, write 4 KiB, close (files removed after the run)
  spool    one exim message: create -D, write 16 KiB in 4 KiB writes, fsync,
           close; create -H.tmp, write 1 KiB, fsync, close, rename to -H;
           read both; unlink both`,
		Example: `  spoolfs bench /var/spool/exim4 --workload spool --clients 8 --duration 10s
  spoolfs bench compare --suite local`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want one DIR, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error { return runBench(c, f, args[0]) },
	}
	fl := c.Flags()
	fl.StringVar(&f.workload, "workload", string(bench.Spool), "meta, write4k or spool")
	fl.IntVar(&f.clients, "clients", 1, "concurrent clients")
	fl.DurationVar(&f.duration, "duration", 5*time.Second, "how long to run (0: until --count)")
	fl.IntVar(&f.count, "count", 1_000_000, "iterations per client at most (0: until --duration)")
	fl.IntVar(&f.maxFiles, "max-files", 0, "write4k: files the run may keep, spread over the clients (0: no bound)")
	fl.BoolVar(&f.json, "json", false, "print the summary as JSON (latencies in seconds, throughput every 100 ms) instead of a table")
	fl.StringVar(&f.plot, "plot", "", "also draw latency percentiles and throughput over time to this PNG file")
	c.AddCommand(newBenchCompareCmd(), newServeMemfsCmd(), newBenchFollowCmd())
	return c
}

// newServeMemfsCmd is the hidden `bench serve-memfs DIR`: jacobsa's memfs
// sample served from this process until SIGINT/SIGTERM, for the memfs
// "process" knob of bench compare.
func newServeMemfsCmd() *cobra.Command {
	var knobs []string
	c := &cobra.Command{
		Use:    "serve-memfs [--knobs writeback,no-default-permissions] DIR",
		Short:  "Serve jacobsa's memfs sample at DIR until SIGINT/SIGTERM (used by bench compare)",
		Hidden: true,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr(c, fmt.Errorf("want one DIR, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := bench.ServeMemfs(ctx, args[0], knobs); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&knobs, "knobs", nil, "writeback, no-default-permissions")
	return c
}

func runBench(c *cobra.Command, f *benchFlags, dir string) error {
	w, err := bench.ParseWorkload(f.workload)
	if err != nil {
		return usageErr(c, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o := bench.Options{Workload: w, Clients: f.clients, Duration: f.duration, Count: f.count, MaxFiles: f.maxFiles}
	bar := newBenchBar(os.Stderr, o)
	if bar != nil {
		o.Progress = bar.update
	}
	res, err := bench.Run(ctx, dir, o)
	bar.finish()
	if err != nil && !errors.Is(err, context.Canceled) {
		return &exitError{code: 1, err: fmt.Errorf("bench %s: %w", dir, err)}
	}
	if perr := writeBenchReport(c.OutOrStdout(), f, dir, &res); perr != nil {
		return &exitError{code: 1, err: perr}
	}
	if err != nil {
		return &exitError{code: 1, err: errors.New("interrupted")}
	}
	return nil
}

// writeBenchReport prints the summary (a table, or JSON) and draws the
// plot if asked.
func writeBenchReport(out io.Writer, f *benchFlags, dir string, res *bench.Result) error {
	sum := bench.Summarize(dir, res)
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	} else if err := sum.WriteTable(out); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if f.plot != "" {
		return bench.WritePlot(f.plot, res)
	}
	return nil
}

// compareFlags holds the flags of `spoolfs bench compare`.
type compareFlags struct {
	suite      string
	quick      bool
	rounds     int
	duration   time.Duration
	warmup     time.Duration
	clients    []int
	workloads  []string
	systems    []string
	variants   []string
	memfsVars  []string
	countIters int
	maxFiles   int
	spoolfsBin string
	out        string
}

func newBenchCompareCmd() *cobra.Command {
	f := &compareFlags{}
	c := &cobra.Command{
		Use:   "compare --suite local|replicated [flags]",
		Short: "Mount tmpfs, the jacobsa memfs sample and spoolfs --local (or the local disk and spoolfs with 3 replicas) and compare them side by side",
		Long: `Mount every system itself (under $TMPDIR/spoolfs-bench-PID-*), run each workload
with each client count in interleaved rounds (system A, B, C, A, B, C...), and
print Markdown tables: ops/s (medians), the ratio of spoolfs to each anchor,
the targets of issue 2, latency, and FUSE requests per operation counted in a
separate untimed pass through the kernel's fuse tracepoints. Everything is
unmounted at the end, also on failure or Ctrl-C. Needs root.

--suite replicated compares the spool workload on a directory of the local
disk (fsync) with spoolfs mounted --replicas on three local replica
processes (buntdb, fsync per batch), 1, 8 and 32 writers, and reports the
ratio to the disk, the targets of issue 3 and p50/p99 of fsync, close and
rename.`,
		Example: `  spoolfs bench compare --suite local
  spoolfs bench compare --suite local --variant "spoolfs-nowb:--writeback-cache=false"
  spoolfs bench compare --suite local --quick --systems tmpfs
  spoolfs bench compare --suite replicated`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return runCompare(c, f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.suite, "suite", "local", "which suite: local or replicated")
	fl.BoolVar(&f.quick, "quick", false, "a smoke run: one short round, few counted iterations")
	fl.IntVar(&f.rounds, "rounds", 0, "interleaved rounds; medians are over them (default 5)")
	fl.DurationVar(&f.duration, "duration", 0, "length of each timed run (default 2s)")
	fl.DurationVar(&f.warmup, "warmup", -1, "untimed run per system before each workload (default 500ms)")
	fl.IntSliceVar(&f.clients, "clients", nil, "client counts (default 1,8)")
	fl.StringSliceVar(&f.workloads, "workloads", nil, "workloads (default meta,write4k,spool)")
	fl.StringSliceVar(&f.systems, "systems", nil, "systems of the suite to run (default local: tmpfs,memfs,memfs-proc,spoolfs; replicated: disk,spoolfs-r3)")
	fl.StringArrayVar(&f.variants, "variant", nil, `an extra spoolfs mount, NAME:[VAR=value...] [@BINARY] FLAGS, e.g. "spoolfs-nowb:--writeback-cache=false", "spoolfs-p1:GOMAXPROCS=1" or "spoolfs-new:@/tmp/spoolfs-new" (repeatable)`)
	fl.StringArrayVar(&f.memfsVars, "memfs-variant", nil, `an extra memfs mount with knobs, NAME:KNOB,KNOB (writeback, no-default-permissions, process), e.g. "memfs-nodp:no-default-permissions" (repeatable)`)
	fl.IntVar(&f.countIters, "count-iters", -1, "iterations per client of the request-counting pass (0: no pass; default 300)")
	fl.IntVar(&f.maxFiles, "max-files", -1, "files a write4k run may keep (default 10000, as in earlier figures)")
	fl.StringVar(&f.spoolfsBin, "spoolfs-bin", "", "spoolfs binary to mount (default: this executable)")
	fl.StringVar(&f.out, "out", "", "also write the report to this file")
	return c
}

func runCompare(c *cobra.Command, f *compareFlags) error {
	cfg, err := f.config(c)
	if err != nil {
		return usageErr(c, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal kills at once
	rep, err := bench.Compare(ctx, cfg)
	if rep != nil {
		var buf bytes.Buffer
		rep.WriteMarkdown(&buf)
		io.Copy(c.OutOrStdout(), bytes.NewReader(buf.Bytes()))
		if f.out != "" {
			if werr := os.WriteFile(f.out, buf.Bytes(), 0o644); werr != nil {
				err = errors.Join(err, fmt.Errorf("write report: %w", werr))
			}
		}
	}
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("bench compare: %w", err)}
	}
	return nil
}

// config builds the comparison from the suite and the flags.
func (f *compareFlags) config(c *cobra.Command) (bench.CompareConfig, error) {
	var cfg bench.CompareConfig
	switch f.suite {
	case "local":
		cfg = bench.LocalSuite(nil)
	case "replicated":
		cfg = bench.ReplicatedSuite()
	default:
		return cfg, fmt.Errorf("suite %q: want local or replicated", f.suite)
	}
	var variants []bench.SystemSpec
	for _, v := range f.variants {
		spec, err := bench.ParseVariant(v)
		if err != nil {
			return bench.CompareConfig{}, err
		}
		if f.suite == "replicated" {
			spec.Kind = bench.KindReplicated // the same flags, on a replicated mount
		}
		variants = append(variants, spec)
	}
	for _, v := range f.memfsVars {
		spec, err := bench.ParseMemfsVariant(v)
		if err != nil {
			return bench.CompareConfig{}, err
		}
		variants = append(variants, spec)
	}
	if f.quick {
		cfg.Quick()
	}
	if err := f.override(&cfg); err != nil {
		return cfg, err
	}
	cfg.Systems = append(cfg.Systems, variants...)
	bin := f.spoolfsBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return cfg, fmt.Errorf("finding this executable: %w", err)
		}
		bin = exe
	}
	cfg.SpoolfsBin = bin
	cfg.Progress = c.ErrOrStderr()
	cfg.Command = "spoolfs " + strings.Join(os.Args[1:], " ")
	return cfg, nil
}

// override applies the flags that were given on top of the suite.
func (f *compareFlags) override(cfg *bench.CompareConfig) error {
	if f.rounds > 0 {
		cfg.Rounds = f.rounds
	}
	if f.duration > 0 {
		cfg.Duration = f.duration
	}
	if f.warmup >= 0 {
		cfg.Warmup = f.warmup
	}
	if f.countIters >= 0 {
		cfg.CountIters = f.countIters
	}
	if f.maxFiles >= 0 {
		cfg.MaxFiles = f.maxFiles
	}
	if len(f.clients) > 0 {
		cfg.Clients, cfg.CountClients = f.clients, f.clients
	}
	if len(f.workloads) > 0 {
		cfg.Workloads = nil
		for _, name := range f.workloads {
			w, err := bench.ParseWorkload(name)
			if err != nil {
				return err
			}
			cfg.Workloads = append(cfg.Workloads, w)
		}
	}
	if len(f.systems) > 0 {
		return selectSystems(cfg, f.systems)
	}
	return nil
}

// selectSystems keeps the suite's systems named in names.
func selectSystems(cfg *bench.CompareConfig, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var kept []bench.SystemSpec
	for _, s := range cfg.Systems {
		if want[s.Name] {
			kept = append(kept, s)
			delete(want, s.Name)
		}
	}
	for n := range want {
		return fmt.Errorf("--systems: no system %q in the suite %s", n, suiteSystems(cfg))
	}
	cfg.Systems = kept
	return nil
}

// suiteSystems lists the names of a suite's systems, for errors.
func suiteSystems(cfg *bench.CompareConfig) string {
	var names []string
	for _, s := range cfg.Systems {
		names = append(names, s.Name)
	}
	return "(" + strings.Join(names, ", ") + ")"
}
