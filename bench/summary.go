package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Summary is what `spoolfs bench DIR` reports of one run: the table it
// prints and the document --json writes. Durations in JSON are in
// seconds (floats), as Prometheus and most tools take them.
type Summary struct {
	Workload  Workload               `json:"workload"`
	Dir       string                 `json:"dir"`
	Clients   int                    `json:"clients"`
	Ops       uint64                 `json:"ops"`
	ElapsedS  float64                `json:"elapsed_seconds"`
	OpsPerSec float64                `json:"ops_per_second"`
	Latency   Percentiles            `json:"latency_seconds"`                 // of one iteration
	Steps     map[string]Percentiles `json:"steps_latency_seconds,omitempty"` // fsync, close, rename, where recorded
	// Throughput is ops/s over each 100 ms of the run, at its end.
	Throughput []Point `json:"throughput"`
}

// Percentiles of a latency distribution, in seconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// Point is one throughput sample.
type Point struct {
	AtS       float64 `json:"at_seconds"`
	OpsPerSec float64 `json:"ops_per_second"`
}

// Summarize turns the result of a run in dir into its Summary.
func Summarize(dir string, r *Result) Summary {
	s := Summary{Workload: r.Workload, Dir: dir, Clients: r.Clients, Ops: r.Ops,
		ElapsedS: r.Elapsed.Seconds(), OpsPerSec: r.OpsPerSec(), Latency: percentiles(&r.Lat),
		Throughput: []Point{}}
	for _, st := range []struct {
		name string
		h    *Hist
	}{{"fsync", &r.Steps.Fsync}, {"close", &r.Steps.Close}, {"rename", &r.Steps.Rename}} {
		if st.h.Count() > 0 {
			if s.Steps == nil {
				s.Steps = map[string]Percentiles{}
			}
			s.Steps[st.name] = percentiles(st.h)
		}
	}
	at, ops := Throughput(r.Timeline)
	for i := range at {
		s.Throughput = append(s.Throughput, Point{AtS: at[i].Seconds(), OpsPerSec: ops[i]})
	}
	return s
}

func percentiles(h *Hist) Percentiles {
	return Percentiles{Count: h.Count(), P50: h.Percentile(0.5).Seconds(), P90: h.Percentile(0.9).Seconds(),
		P99: h.Percentile(0.99).Seconds(), P999: h.Percentile(0.999).Seconds(), Max: h.Max().Seconds()}
}

// WriteTable prints s as an aligned table: one line of throughput, then a
// row of percentiles for an iteration and for each step recorded.
func (s Summary) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%s on %s: %d client(s), %d ops in %s: %.1f ops/s\n\n", s.Workload, s.Dir, s.Clients,
		s.Ops, secs(s.ElapsedS).Round(time.Millisecond), s.OpsPerSec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency\tcount\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, p Percentiles) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", name, p.Count, secs(p.P50), secs(p.P90),
			secs(p.P99), secs(p.P999), secs(p.Max))
	}
	row("iteration", s.Latency)
	for _, name := range []string{"fsync", "close", "rename"} {
		if p, ok := s.Steps[name]; ok {
			row(name, p)
		}
	}
	return tw.Flush()
}

// secs turns seconds back into a Duration for printing, to the microsecond.
func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}
