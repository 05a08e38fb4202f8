package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Machine describes where a comparison ran.
type Machine struct {
	Host, Kernel, CPU string
	CPUs, GOMAXPROCS  int
	Go                string
}

// LoadAvg returns the 1-minute load average of the machine ("" if unknown):
// other work on the machine makes every figure noisier.
func LoadAvg() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return ""
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return ""
	}
	return strconv.FormatFloat(l.Load1, 'f', 2, 64) // as /proc/loadavg writes it
}

// DescribeMachine returns this machine's description.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
	m.Host, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if cpus, err := fs.CPUInfo(); err == nil && len(cpus) > 0 {
			m.CPU = cpus[0].ModelName
		}
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s: %d CPUs (%s), GOMAXPROCS %d, Linux %s, %s",
		m.Host, m.CPUs, m.CPU, m.GOMAXPROCS, m.Kernel, m.Go)
}

// Target is a goal of issue 2: spoolfs at least Ratio times the memfs
// sample's rate on Workload with Clients clients.
type Target struct {
	Workload Workload
	Clients  int
	Ratio    float64
}

// Targets are the goals of issue 2 against the memfs sample.
var Targets = []Target{{Meta, 1, 2}, {Spool, 1, 2}, {Meta, 8, 1.3}, {Spool, 8, 1.3}}

// Ratio compares system a to system b on one combination. Runs of the same
// round ran next to each other, under the same load from the rest of the
// machine, so it pairs them: med is the median of the per-round ratios, lo
// and hi their range. Without paired rounds it falls back to the ratio of
// the medians. NaN when either system is missing.
func (r *Report) Ratio(a, b string, w Workload, clients int) (med, lo, hi float64) {
	ca, cb := r.Cells[CellKey{a, w, clients}], r.Cells[CellKey{b, w, clients}]
	if ca == nil || cb == nil {
		return math.NaN(), math.NaN(), math.NaN()
	}
	ra, rb := ca.Rates(), cb.Rates()
	var paired []float64
	for i := range ra {
		if i < len(rb) && !math.IsNaN(ra[i]) && !math.IsNaN(rb[i]) {
			paired = append(paired, ra[i]/rb[i])
		}
	}
	if len(paired) == 0 {
		return ca.MedianRate() / cb.MedianRate(), math.NaN(), math.NaN()
	}
	return median(paired), slices.Min(paired), slices.Max(paired)
}

// memfsAnchors returns the memfs systems that serve with the sample's own
// config, in this process or in their own: the ones the targets are
// measured against. Variants that turn other knobs are not anchors.
func (r *Report) memfsAnchors() []string {
	var out []string
	for _, s := range r.Systems {
		if s.Kind == KindMemfs && s.MountErr == nil && (!s.Variant || s.ProcessOnly) {
			out = append(out, s.Name)
		}
	}
	return out
}

// systemsOfKind returns the names of the measured systems of a kind.
func (r *Report) systemsOfKind(kind string) []string {
	var out []string
	for _, s := range r.Systems {
		if s.Kind == kind && s.MountErr == nil {
			out = append(out, s.Name)
		}
	}
	return out
}

// anchors returns the measured anchors of a kind: the systems as the
// suite defines them, not the variants of memfs that turn a knob.
func (r *Report) anchors(kind string) []string {
	var out []string
	for _, s := range r.Systems {
		if s.Kind == kind && s.MountErr == nil && !s.Variant {
			out = append(out, s.Name)
		}
	}
	return out
}

func (r *Report) measured() []SystemInfo {
	var out []SystemInfo
	for _, s := range r.Systems {
		if s.MountErr == nil {
			out = append(out, s)
		}
	}
	return out
}

// WriteMarkdown writes the report as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	r.writeHeader(w)
	r.writeThroughput(w)
	r.writeRatios(w)
	r.writeTargets(w)
	r.writeReplicated(w)
	r.writeLatency(w)
	r.writeCPU(w)
	r.writeRequests(w)
	r.writeOpcodes(w)
	if r.Err != nil {
		fmt.Fprintf(w, "\n**The comparison stopped early:** %v\n", r.Err)
	}
}

func (r *Report) writeHeader(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "## bench compare --suite %s, %s\n\n", c.Suite, r.Started.Format("2006-01-02 15:04 MST"))
	if c.Command != "" {
		fmt.Fprintf(w, "Command: `%s`  \n", c.Command)
	}
	fmt.Fprintf(w, "Machine: %s  \n", r.Machine)
	fmt.Fprintf(w, "Load average (1 min) at the start and the end: %s, %s (other processes on the machine add noise; the per-round ranges show how much)  \n",
		r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "Runs: %d interleaved rounds (each round runs every system in turn) of %s per run, "+
		"after a %s warm-up; at most %d iterations per client and run, and %d files per write4k run "+
		"(a faster system ends those sooner); figures are medians over the rounds.\n\n",
		c.Rounds, c.Duration, c.Warmup, c.MaxOps, c.MaxFiles)
	tb := newTable(w, "system", "how it is mounted")
	for _, s := range r.Systems {
		d := s.Describe
		if s.MountErr != nil {
			d = fmt.Sprintf("NOT MEASURED: %s", oneLine(s.MountErr))
		}
		tb.row(s.Name, d)
	}
	tb.flush()
	fmt.Fprintln(w)
}

func (r *Report) writeThroughput(w io.Writer) {
	r.writeSystemTable(w, "### Throughput (operations/s, median of the rounds)", "", r.rateCell)
}

// writeSystemTable writes a table with a row per workload and client count
// and a column per measured system, each cell given by cell.
func (r *Report) writeSystemTable(w io.Writer, title, intro string, cell func(CellKey) string) {
	sys := r.measured()
	fmt.Fprintln(w, title)
	fmt.Fprintln(w)
	if intro != "" {
		fmt.Fprintln(w, intro)
		fmt.Fprintln(w)
	}
	tb := header(w, "workload", "clients", names(sys)...)
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.Clients {
			row := []string{string(wl), fmt.Sprint(n)}
			for _, s := range sys {
				row = append(row, cell(CellKey{s.Name, wl, n}))
			}
			tb.row(row...)
		}
	}
	tb.flush()
	fmt.Fprintln(w)
}

func (r *Report) rateCell(k CellKey) string {
	c := r.Cells[k]
	switch {
	case c == nil:
		return "—"
	case c.Err != nil && math.IsNaN(c.MedianRate()):
		return "failed: " + oneLine(c.Err)
	case c.Err != nil:
		return fmt.Sprintf("%s (then failed: %s)", fmtRate(c.MedianRate()), oneLine(c.Err))
	}
	return fmtRate(c.MedianRate())
}

// writeRatios writes each spoolfs system's ratio to each anchor.
func (r *Report) writeRatios(w io.Writer) {
	subjects := r.systemsOfKind(KindSpoolfs)
	anchors := append(r.memfsAnchors(), r.anchors(KindTmpfs)...)
	if len(subjects) == 0 || len(anchors) == 0 {
		return
	}
	fmt.Fprintln(w, "### Ratios to the anchors (median of the per-round ratios; in brackets their range)")
	fmt.Fprintln(w)
	var cols []string
	for _, s := range subjects {
		for _, a := range anchors {
			cols = append(cols, s+" / "+a)
		}
	}
	tb := header(w, "workload", "clients", cols...)
	for _, wl := range r.Config.Workloads {
		for _, n := range r.Config.Clients {
			row := []string{string(wl), fmt.Sprint(n)}
			for _, s := range subjects {
				for _, a := range anchors {
					med, lo, hi := r.Ratio(s, a, wl, n)
					row = append(row, fmtRatio(med, lo, hi))
				}
			}
			tb.row(row...)
		}
	}
	tb.flush()
	fmt.Fprintln(w)
}

func (r *Report) writeTargets(w io.Writer) {
	subjects := r.systemsOfKind(KindSpoolfs)
	memfs := r.memfsAnchors()
	if len(subjects) == 0 || len(memfs) == 0 {
		return
	}
	r.writeTargetTable(w, "### Targets of issue 2 (spoolfs / memfs sample, median of the per-round ratios)",
		subjects, memfs, Targets, false)
}

// writeTargetTable writes a table of targets: for each target a row, for
// each subject / anchor pair the median of the per-round ratios against
// the target (with their range if ranges).
func (r *Report) writeTargetTable(w io.Writer, title string, subjects, anchors []string, targets []Target, ranges bool) {
	fmt.Fprintln(w, title)
	fmt.Fprintln(w)
	var cols []string
	for _, s := range subjects {
		for _, a := range anchors {
			cols = append(cols, s+" / "+a)
		}
	}
	tb := header(w, "workload", "clients", append([]string{"target"}, cols...)...)
	for _, t := range targets {
		if !r.hasCell(t.Workload, t.Clients) {
			continue
		}
		row := []string{string(t.Workload), fmt.Sprint(t.Clients), fmt.Sprintf("≥ %.1f×", t.Ratio)}
		for _, s := range subjects {
			for _, a := range anchors {
				med, lo, hi := r.Ratio(s, a, t.Workload, t.Clients)
				cell := verdict(med, t.Ratio)
				if ranges {
					cell += rangeNote(lo, hi)
				}
				row = append(row, cell)
			}
		}
		tb.row(row...)
	}
	tb.flush()
	fmt.Fprintln(w)
}

func verdict(ratio, target float64) string {
	switch {
	case math.IsNaN(ratio):
		return "not measured"
	case ratio >= target:
		return fmt.Sprintf("%.2f× met", ratio)
	}
	return fmt.Sprintf("%.2f× not met", ratio)
}

func (r *Report) hasCell(wl Workload, n int) bool {
	for k := range r.Cells {
		if k.Workload == wl && k.Clients == n {
			return true
		}
	}
	return false
}

func (r *Report) writeLatency(w io.Writer) {
	r.writeSystemTable(w, "### Latency of one operation in the median run (p50 / p99)", "", r.latencyCell)
}

func (r *Report) latencyCell(k CellKey) string {
	c := r.Cells[k]
	if c == nil || c.MedianRun() == nil {
		return "—"
	}
	m := c.MedianRun()
	return fmt.Sprintf("%s / %s", fmtDur(m.Lat.Percentile(0.5)), fmtDur(m.Lat.Percentile(0.99)))
}

func names(sys []SystemInfo) []string {
	out := make([]string, len(sys))
	for i, s := range sys {
		out[i] = s.Name
	}
	return out
}

// mdTable is a Markdown table, written by olekukonko/tablewriter's
// Markdown renderer when flushed: a header row, left-aligned columns padded
// to one width (the report reads as well in a terminal as rendered).
type mdTable struct{ t *tablewriter.Table }

// newTable starts a table with these column titles (as written: no
// upper-casing).
func newTable(w io.Writer, cols ...string) *mdTable {
	t := tablewriter.NewTable(w, tablewriter.WithRenderer(renderer.NewMarkdown()),
		tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft))
	t.Header(cols)
	return &mdTable{t: t}
}

// header starts a table whose first two columns are a and b.
func header(w io.Writer, a, b string, rest ...string) *mdTable {
	return newTable(w, append([]string{a, b}, rest...)...)
}

// row adds a row; cells hold no "|" (oneLine replaces it in errors).
func (m *mdTable) row(cols ...string) { _ = m.t.Append(cols) }

// flush writes the table. A report is written to a buffer or a file whose
// own write errors its caller sees; the renderer's are those.
func (m *mdTable) flush() { _ = m.t.Render() }

func fmtRate(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	s := fmt.Sprintf("%.0f", x)
	// thousands separators
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func fmtRatio(med, lo, hi float64) string {
	if math.IsNaN(med) {
		return "—"
	}
	if math.IsNaN(lo) || lo == hi {
		return fmt.Sprintf("%.2f×", med)
	}
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", med, lo, hi)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
}

// oneLine shortens an error to one table-safe line.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
