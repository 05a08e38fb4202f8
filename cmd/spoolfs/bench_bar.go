package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/bench"
)

// benchBar is the progress bar of `spoolfs bench DIR` on a terminal: the
// time bound elapsing (or, with --duration 0, iterations against the
// count bound), with the ops done and the rate so far.
type benchBar struct {
	bar    *progressbar.ProgressBar
	byTime bool
}

// newBenchBar returns the bar for a run of o on w, or nil when w is not a
// terminal (a pipe or a file gets the summary alone).
func newBenchBar(w *os.File, o bench.Options) *benchBar {
	if _, err := unix.IoctlGetTermios(int(w.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	b := &benchBar{byTime: o.Duration > 0}
	max := int64(o.Duration / time.Millisecond)
	if !b.byTime {
		max = int64(o.Count) * int64(o.Clients)
	}
	b.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(string(o.Workload)),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true))
	return b
}

// update is Options.Progress: called from the run's sampler.
func (b *benchBar) update(ops uint64, elapsed time.Duration) {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(ops) / elapsed.Seconds()
	}
	b.bar.Describe(fmt.Sprintf("%d ops, %.0f ops/s", ops, rate))
	if b.byTime {
		_ = b.bar.Set64(int64(elapsed / time.Millisecond))
	} else {
		_ = b.bar.Set64(int64(ops))
	}
}

// finish clears the bar before the summary is printed; nil: no bar.
func (b *benchBar) finish() {
	if b != nil {
		_ = b.bar.Finish()
	}
}
