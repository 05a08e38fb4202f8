package bench

import (
	"fmt"
	"io"
	"math"
)

// perOpMicros returns d per operation of r in µs.
func perOpMicros(d float64, r *Result) float64 {
	if r == nil || r.Ops == 0 {
		return math.NaN()
	}
	return d / 1e3 / float64(r.Ops)
}

// writeCPU writes the processor time per operation of each median run: the
// bench process (clients, the kernel's FUSE client side, an in-process
// memfs) and a server process (spoolfs).
func (r *Report) writeCPU(w io.Writer) {
	r.writeSystemTable(w, "### CPU time per operation in the median run (µs: bench process + server process [+ its replicas])",
		"The bench process runs the clients, so it carries their system calls, the kernel's FUSE "+
			"client side and, for memfs, the server too; spoolfs is its own process. 2 CPUs give at most 2 s of CPU per second.",
		r.cpuCell)
}

func (r *Report) cpuCell(k CellKey) string {
	c := r.Cells[k]
	if c == nil || c.MedianRun() == nil {
		return "—"
	}
	m := c.MedianRun()
	b := perOpMicros(float64(m.CPU.Bench), m)
	if m.CPU.Server == 0 {
		return fmt.Sprintf("%.0f", b)
	}
	if m.CPU.Helpers == 0 {
		return fmt.Sprintf("%.0f + %.0f", b, perOpMicros(float64(m.CPU.Server), m))
	}
	return fmt.Sprintf("%.0f + %.0f + %.0f", b, perOpMicros(float64(m.CPU.Server), m), perOpMicros(float64(m.CPU.Helpers), m))
}

// writeServerCPUPerRequest writes, for servers in their own process, the
// CPU they spent per FUSE request: their whole cost, reading the request
// from /dev/fuse and writing the reply included.
func (r *Report) writeServerCPUPerRequest(w io.Writer) {
	subjects := r.systemsOfKind(KindSpoolfs)
	if len(subjects) == 0 {
		return
	}
	fmt.Fprintln(w, "Server CPU per FUSE request (µs; server CPU per op in the median run / requests per op):")
	fmt.Fprintln(w)
	tb := header(w, "workload", "clients", subjects...)
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.Clients {
			if !contains(r.Config.CountClients, n) {
				continue
			}
			row := []string{string(wl), fmt.Sprint(n)}
			for _, s := range subjects {
				row = append(row, r.serverPerRequest(CellKey{s, wl, n}))
			}
			tb.row(row...)
		}
	}
	tb.flush()
	fmt.Fprintln(w)
}

func (r *Report) serverPerRequest(k CellKey) string {
	c, q := r.Cells[k], r.Requests[k]
	if c == nil || c.MedianRun() == nil || q == nil || q.Err != nil {
		return "—"
	}
	m := c.MedianRun()
	v := perOpMicros(float64(m.CPU.Server), m) / q.PerOp()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}
