package bench

import (
	"fmt"
	"io"
	"math"
)

// writeReplicated writes what the replicated suite is about: each
// replicated spoolfs against the local disk (messages/s and the targets of
// issue 3) and the latencies of fsync, close and rename.
func (r *Report) writeReplicated(w io.Writer) {
	subjects, disks := r.systemsOfKind(KindReplicated), r.systemsOfKind(KindDisk)
	if len(subjects) == 0 || len(disks) == 0 {
		return
	}
	r.writeTargetTable(w, "### Replicated spoolfs against the local disk with fsync (issue 3)",
		subjects, disks, ReplicatedTargets, true)
	r.writeSteps(w, append(append([]string(nil), disks...), subjects...))
	r.writeFsyncTarget(w, subjects)
	r.writeSystemTable(w, "### Replica commits per message in the median run (the three replicas together)",
		"Each commit is one write and one fsync on one replica; a message makes three durability waits (two fsyncs, a rename).",
		r.commitsCell)
}

func (r *Report) commitsCell(k CellKey) string {
	c := r.Cells[k]
	if c == nil || c.MedianRun() == nil || c.MedianRun().Commits == 0 || c.MedianRun().Ops == 0 {
		return "—"
	}
	m := c.MedianRun()
	return fmt.Sprintf("%.2f", float64(m.Commits)/float64(m.Ops))
}

func rangeNote(lo, hi float64) string {
	if math.IsNaN(lo) || lo == hi {
		return ""
	}
	return fmt.Sprintf(" [%.2f–%.2f]", lo, hi)
}

// writeSteps writes p50 / p99 of fsync, close and rename in the median run.
func (r *Report) writeSteps(w io.Writer, systems []string) {
	fmt.Fprintln(w, "### fsync, close and rename in the median run (p50 / p99)")
	fmt.Fprintln(w)
	tb := header(w, "system", "clients", "messages/s", "fsync", "close", "rename", "message")
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.Clients {
			for _, s := range systems {
				c := r.Cells[CellKey{s, wl, n}]
				if c == nil || c.MedianRun() == nil {
					continue
				}
				m := c.MedianRun()
				tb.row(s, fmt.Sprint(n), fmtRate(c.MedianRate()), p50p99(&m.Steps.Fsync),
					p50p99(&m.Steps.Close), p50p99(&m.Steps.Rename), p50p99(&m.Lat))
			}
		}
	}
	tb.flush()
	fmt.Fprintln(w)
}

func p50p99(h *Hist) string {
	if h.Count() == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s", fmtDur(h.Percentile(0.5)), fmtDur(h.Percentile(0.99)))
}

// writeFsyncTarget checks issue 3's bound on fsync's p99 at 1 writer.
func (r *Report) writeFsyncTarget(w io.Writer, subjects []string) {
	for _, s := range subjects {
		c := r.Cells[CellKey{s, Spool, 1}]
		if c == nil || c.MedianRun() == nil {
			continue
		}
		p99 := c.MedianRun().Steps.Fsync.Percentile(0.99)
		v := "met"
		if p99 >= FsyncP99Target {
			v = "not met"
		}
		fmt.Fprintf(w, "Target of issue 3: %s fsync p99 at 1 writer under %s: %s, %s.\n\n", s, fmtDur(FsyncP99Target), fmtDur(p99), v)
	}
}
