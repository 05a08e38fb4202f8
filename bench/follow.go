package bench

// The follower-lag benchmark (`spoolfs bench follow-lag`, make
// bench-follow; issue 11): three replica processes, a primary mounted
// --replicas and a follower mounted --follow on loopback, all of them this
// machine's. Writers create files on the primary at a paced rate (each
// file: create, write, close; close returns once W replicas hold it);
// checkers stat each file's name on the follower from the moment its
// close returned until the stat succeeds. The lag is that interval: what
// a reader on another host waits for a message the primary acknowledged.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// FollowOptions configure one follower-lag run.
type FollowOptions struct {
	Bin      string        // the spoolfs binary (replicas, primary, follower)
	Rate     int           // files per second created on the primary (paced)
	Duration time.Duration // how long files are created
	Size     int           // bytes per file
	Writers  int           // goroutines creating files (a close waits for replicas)
	Poll     time.Duration // pause between two stats of one name on the follower
	Deadline time.Duration // a file not visible after this is counted missing
	Flags    []string      // more flags for both mounts (e.g. --entry-timeout)
}

// DefaultFollowOptions are issue 11's: 1,000 files/s for 10 s, 1 KiB each.
func DefaultFollowOptions(bin string) FollowOptions {
	return FollowOptions{Bin: bin, Rate: 1000, Duration: 10 * time.Second, Size: 1024, Writers: 16,
		Poll: 100 * time.Microsecond, Deadline: 10 * time.Second}
}

// FollowLagTarget is issue 11's bound on the p99 of the lag on loopback.
const FollowLagTarget = 10 * time.Millisecond

// FollowResult is what a follower-lag run measured.
type FollowResult struct {
	Options  FollowOptions
	Files    int           // created and acknowledged on the primary
	Missing  int           // not visible on the follower within Deadline
	Failed   int           // creations that failed on the primary
	Behind   int           // files started more than one interval after their slot: the writers fell behind the rate
	Elapsed  time.Duration // from the first slot to the last close
	Lag      Hist          // close returned on the primary → stat succeeds on the follower
	Close    Hist          // create + write + close on the primary
	Describe string
}

// followRig is the processes of a run.
type followRig struct {
	base     string
	primary  *replicatedSystem
	follower *childSystem
	pdir     string
	fdir     string
}

// FollowLag runs the follower-lag benchmark under a new directory of
// $TMPDIR, which it removes with everything it mounted.
func FollowLag(ctx context.Context, o FollowOptions) (*FollowResult, error) {
	if o.Rate <= 0 || o.Duration <= 0 || o.Writers <= 0 || o.Size < 0 {
		return nil, fmt.Errorf("follow-lag: rate %d, duration %v, writers %d, size %d: want positive values", o.Rate, o.Duration, o.Writers, o.Size)
	}
	rig, err := startFollowRig(ctx, o)
	if err != nil {
		return nil, err
	}
	res, err := rig.measure(ctx, o)
	return res, errors.Join(err, rig.stop())
}

func startFollowRig(ctx context.Context, o FollowOptions) (*followRig, error) {
	base, err := os.MkdirTemp("", fmt.Sprintf("%s%d-follow-", baseDirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	r := &followRig{base: base, pdir: filepath.Join(base, "primary"), fdir: filepath.Join(base, "follower")}
	for _, d := range []string{r.pdir, r.fdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, errors.Join(err, os.RemoveAll(base))
		}
	}
	r.primary = newReplicated("primary", o.Bin, o.Flags)
	if err := r.primary.Mount(ctx, r.pdir); err != nil {
		return nil, errors.Join(fmt.Errorf("primary: %w", err), os.RemoveAll(base))
	}
	addrs := strings.Join(r.primary.addrs, ",")
	r.follower = &childSystem{name: "follower", kind: "spoolfs-follower", bin: o.Bin,
		argv: func(dir string) []string {
			args := []string{"mount", "--log-level", "warn", "--follow", "--replicas", addrs, "--node-id", "bench-follower"}
			return append(append(args, o.Flags...), "bench", dir)
		}}
	if err := r.follower.Mount(ctx, r.fdir); err != nil {
		return nil, errors.Join(fmt.Errorf("follower: %w", err), r.stop())
	}
	return r, nil
}

// stop unmounts the follower, then the primary and its replicas, and
// removes the run's directory.
func (r *followRig) stop() error {
	var errs []error
	if r.follower != nil {
		errs = append(errs, r.follower.Unmount())
	}
	errs = append(errs, r.primary.Unmount(), os.RemoveAll(r.base))
	return errors.Join(errs...)
}

// followFile is one file handed from a writer to the checkers.
type followFile struct {
	name   string
	closed time.Time // when its close returned on the primary
}

// measure creates the files on the primary and times their arrival on
// the follower.
func (r *followRig) measure(ctx context.Context, o FollowOptions) (*FollowResult, error) {
	res := &FollowResult{Options: o, Describe: r.primary.Describe() + "; a follower `spoolfs mount --follow --replicas A,B,C VOLUME DIR` (child process)"}
	if err := os.Mkdir(filepath.Join(r.pdir, "q"), 0o755); err != nil {
		return nil, err
	}
	total := int(o.Duration.Seconds() * float64(o.Rate))
	files := make(chan followFile, total)
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now().Add(50 * time.Millisecond)
	interval := time.Second / time.Duration(o.Rate)
	data := make([]byte, o.Size)
	for w := 0; w < o.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl Hist
			var failed, behind int
			for i := int(next.Add(1) - 1); i < total && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				slot := start.Add(time.Duration(i) * interval)
				time.Sleep(time.Until(slot))
				name := fmt.Sprintf("q/f%07d", i)
				t0 := time.Now()
				if t0.After(slot.Add(interval)) {
					behind++
				}
				if err := os.WriteFile(filepath.Join(r.pdir, name), data, 0o644); err != nil {
					failed++
					continue
				}
				done := time.Now()
				cl.Record(done.Sub(t0))
				files <- followFile{name: filepath.Join(r.fdir, name), closed: done}
			}
			mu.Lock()
			res.Close.Merge(&cl)
			res.Failed += failed
			res.Behind += behind
			mu.Unlock()
		}()
	}
	checked := r.check(ctx, o, files, res)
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(files)
	<-checked
	return res, ctx.Err()
}

// check stats each file on the follower until it is there, from enough
// goroutines that a late file does not delay the next ones' measure.
func (r *followRig) check(ctx context.Context, o FollowOptions, files <-chan followFile, res *FollowResult) <-chan struct{} {
	done := make(chan struct{})
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k := 0; k < o.Writers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lag Hist
			missing := 0
			for f := range files {
				if d, ok := waitVisible(ctx, f, o); ok {
					lag.Record(d)
				} else {
					missing++
				}
			}
			mu.Lock()
			res.Lag.Merge(&lag)
			res.Files += int(lag.Count()) + missing
			res.Missing += missing
			mu.Unlock()
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

// waitVisible stats f on the follower until it answers and returns the
// time from f's close on the primary; false after the deadline.
func waitVisible(ctx context.Context, f followFile, o FollowOptions) (time.Duration, bool) {
	var st unix.Stat_t
	for {
		if unix.Stat(f.name, &st) == nil {
			return time.Since(f.closed), true
		}
		if time.Since(f.closed) > o.Deadline || ctx.Err() != nil {
			return 0, false
		}
		time.Sleep(o.Poll)
	}
}

// WriteMarkdown prints the run's figures as a table, with the target of
// issue 11.
func (res *FollowResult) WriteMarkdown(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "### Follower lag: close() returned on the primary → stat succeeds on the follower\n\n")
	fmt.Fprintf(w, "%d files of %d bytes at %d files/s paced (%d writers) for %v; stat polled every %v.\n", res.Files, o.Size, o.Rate, o.Writers, o.Duration, o.Poll)
	fmt.Fprintf(w, "Setup: %s.\n\n", res.Describe)
	tb := newTable(w, "measure", "count", "p50", "p99", "max")
	tb.row("lag (visible on the follower)", fmt.Sprint(res.Lag.Count()), fmtDur(res.Lag.Percentile(0.5)), fmtDur(res.Lag.Percentile(0.99)), fmtDur(res.Lag.Max()))
	tb.row("create+write+close on the primary", fmt.Sprint(res.Close.Count()), fmtDur(res.Close.Percentile(0.5)), fmtDur(res.Close.Percentile(0.99)), fmtDur(res.Close.Max()))
	tb.flush()
	fmt.Fprintln(w)
	achieved := float64(res.Close.Count()) / res.Elapsed.Seconds()
	fmt.Fprintf(w, "Achieved %.0f files/s; %d files started later than one interval after their slot; %d creations failed; %d files not visible within %v.\n",
		achieved, res.Behind, res.Failed, res.Missing, o.Deadline)
	v := "met"
	if p99 := res.Lag.Percentile(0.99); p99 > FollowLagTarget || res.Missing > 0 {
		v = "not met"
	}
	fmt.Fprintf(w, "Target of issue 11: lag p99 ≤ %s on loopback: %s, %s.\n", fmtDur(FollowLagTarget), fmtDur(res.Lag.Percentile(0.99)), v)
}
