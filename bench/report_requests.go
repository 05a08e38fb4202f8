package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
)

func (r *Report) fuseSystems() []SystemInfo {
	var out []SystemInfo
	for _, s := range r.measured() {
		if s.FUSE {
			out = append(out, s)
		}
	}
	return out
}

// writeRequests writes the FUSE requests per operation and, at one client,
// the time each request cost in the timed runs.
func (r *Report) writeRequests(w io.Writer) {
	sys := r.fuseSystems()
	if len(sys) == 0 || r.Config.CountIters <= 0 {
		return
	}
	fmt.Fprintln(w, "### FUSE requests per operation")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Counted with %s; %d iterations per client.\n\n", CountMethod, r.Config.CountIters)
	if r.CountErr != nil {
		fmt.Fprintf(w, "Not counted: %s\n\n", oneLine(r.CountErr))
		return
	}
	tb := header(w, "workload", "clients", names(sys)...)
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.CountClients {
			row := []string{string(wl), fmt.Sprint(n)}
			for _, s := range sys {
				row = append(row, r.requestsCell(CellKey{s.Name, wl, n}))
			}
			tb.row(row...)
		}
	}
	tb.flush()
	fmt.Fprintln(w)
	r.writeTimePerRequest(w, sys)
	r.writeServerCPUPerRequest(w)
}

func (r *Report) requestsCell(k CellKey) string {
	q := r.Requests[k]
	switch {
	case q == nil:
		return "—"
	case q.Err != nil:
		return "failed: " + oneLine(q.Err)
	}
	return fmt.Sprintf("%.1f", q.PerOp())
}

// writeTimePerRequest divides the timed runs at one client by the request
// count: the wall time one FUSE request cost, client side included.
func (r *Report) writeTimePerRequest(w io.Writer, sys []SystemInfo) {
	if !contains(r.Config.Clients, 1) || !contains(r.Config.CountClients, 1) {
		return
	}
	fmt.Fprintln(w, "Wall time per FUSE request at 1 client (1 / (ops/s × requests/op), µs):")
	fmt.Fprintln(w)
	tb := header(w, "workload", "clients", names(sys)...)
	for _, wl := range r.Config.Workloads {
		row := []string{string(wl), "1"}
		for _, s := range sys {
			k := CellKey{s.Name, wl, 1}
			cell := "—"
			if c, q := r.Cells[k], r.Requests[k]; c != nil && q != nil && q.Err == nil {
				us := 1e6 / (c.MedianRate() * q.PerOp())
				if !math.IsNaN(us) && !math.IsInf(us, 0) {
					cell = fmt.Sprintf("%.1f", us)
				}
			}
			row = append(row, cell)
		}
		tb.row(row...)
	}
	tb.flush()
	fmt.Fprintln(w)
}

// writeOpcodes writes, per workload and client count, the requests of each
// opcode per operation and their mean time from send to reply as the
// kernel saw it (tracing on, so slower than in the timed runs).
func (r *Report) writeOpcodes(w io.Writer) {
	sys := r.fuseSystems()
	if len(sys) == 0 || r.CountErr != nil || r.Config.CountIters <= 0 {
		return
	}
	fmt.Fprintln(w, "### Requests by opcode (per operation; in brackets the mean µs from send to reply, tracing on)")
	fmt.Fprintln(w)
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.CountClients {
			r.writeOpcodeTable(w, sys, wl, n)
		}
	}
}

func (r *Report) writeOpcodeTable(w io.Writer, sys []SystemInfo, wl Workload, n int) {
	ops := r.opcodesOf(sys, wl, n)
	if len(ops) == 0 {
		return
	}
	fmt.Fprintf(w, "%s, %d client(s):\n\n", wl, n)
	cols := append([]string{"opcode"}, names(sys)...)
	tb := newTable(w, cols...)
	for _, op := range ops {
		row := []string{op}
		for _, s := range sys {
			row = append(row, r.opcodeCell(CellKey{s.Name, wl, n}, op))
		}
		tb.row(row...)
	}
	tb.flush()
	fmt.Fprintln(w)
}

// opcodesOf returns every opcode seen for a workload, most frequent first.
func (r *Report) opcodesOf(sys []SystemInfo, wl Workload, n int) []string {
	total := map[string]float64{}
	for _, s := range sys {
		q := r.Requests[CellKey{s.Name, wl, n}]
		if q == nil || q.Err != nil || q.Ops == 0 {
			continue
		}
		for op, st := range q.Counts.Ops {
			total[op] += float64(st.Count) / float64(q.Ops)
		}
	}
	ops := make([]string, 0, len(total))
	for op := range total {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if total[ops[i]] != total[ops[j]] {
			return total[ops[i]] > total[ops[j]]
		}
		return ops[i] < ops[j]
	})
	return ops
}

func (r *Report) opcodeCell(k CellKey, op string) string {
	q := r.Requests[k]
	if q == nil || q.Err != nil || q.Ops == 0 {
		return "—"
	}
	st := q.Counts.Ops[op]
	if st == nil {
		return "0"
	}
	cell := fmt.Sprintf("%.2f", float64(st.Count)/float64(q.Ops))
	if st.Replied > 0 {
		cell += fmt.Sprintf(" (%.0f)", float64(st.Wait.Microseconds())/float64(st.Replied))
	}
	return cell
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
