package node

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/internal/process"
	"github.com/spoolfs/spoolfs/replication"
)

// progressLogEvery spaces the log lines of a long fetch or install.
const progressLogEvery = 2 * time.Second

// ProgressFor returns how recovery reports its progress: a progress bar
// on w when w is a terminal, log lines otherwise (a phase starting, then
// at most one line every 2 seconds, then its end).
func ProgressFor(w *os.File, log *zap.Logger) func(replication.Progress) {
	r := &progressReporter{log: log}
	if process.IsTerminal(w) {
		r.out = w
	}
	return r.report
}

// progressReporter follows one recovery. Its calls are serialised by
// replication (one at a time).
type progressReporter struct {
	log     *zap.Logger
	out     *os.File // nil: log lines only
	key     string   // phase and replica of the step in progress
	bar     *progressbar.ProgressBar
	lastLog time.Time
}

func (r *progressReporter) report(p replication.Progress) {
	key := p.Phase + " " + p.Replica
	if key != r.key {
		r.endStep()
		r.key = key
		r.startStep(p)
	}
	switch p.Phase {
	case "fetch", "install":
		r.advance(p)
	case "done":
		r.endStep()
		r.log.Info("recovery done", zap.Uint64("term", p.Term), zap.Uint64("inodes", p.Inodes),
			zap.Uint64("bytes", p.BytesTotal))
	}
}

func (r *progressReporter) startStep(p replication.Progress) {
	switch p.Phase {
	case "acquire":
		r.log.Info("recovery: asking the replicas for a new term", zap.Uint64("term", p.Term))
	case "fetch", "install":
		r.log.Info("recovery: "+stepName(p), zap.String("replica", p.Replica),
			zap.Uint64("inodes", p.InodesTotal), zap.Uint64("bytes", p.BytesTotal))
		r.lastLog = time.Now()
		if r.out != nil {
			r.bar = newBar(r.out, stepName(p)+" "+p.Replica, p)
		}
	}
}

func stepName(p replication.Progress) string {
	if p.Phase == "fetch" {
		return "loading the volume from"
	}
	return "writing the volume to"
}

func newBar(w *os.File, desc string, p replication.Progress) *progressbar.ProgressBar {
	max, bytes := int64(p.BytesTotal), true
	if max == 0 {
		max, bytes = int64(p.InodesTotal), false
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(bytes), progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetWidth(30), progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	}
	if !bytes {
		opts = append(opts, progressbar.OptionSetItsString("inodes"))
	}
	return progressbar.NewOptions64(max, opts...)
}

func (r *progressReporter) advance(p replication.Progress) {
	if r.bar != nil {
		if p.BytesTotal > 0 {
			_ = r.bar.Set64(int64(p.Bytes))
		} else {
			_ = r.bar.Set64(int64(p.Inodes))
		}
		return
	}
	if time.Since(r.lastLog) < progressLogEvery {
		return
	}
	r.lastLog = time.Now()
	r.log.Info("recovery: "+stepName(p)+" ...", zap.String("replica", p.Replica),
		zap.Uint64("inodes", p.Inodes), zap.Uint64("inodes_total", p.InodesTotal),
		zap.Uint64("bytes", p.Bytes), zap.Uint64("bytes_total", p.BytesTotal))
}

func (r *progressReporter) endStep() {
	if r.bar != nil {
		_ = r.bar.Finish()
		r.bar = nil
	}
}
