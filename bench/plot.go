package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotPercentiles are the points of the latency curve, in nines: 50, 90,
// 99, 99.9, 99.99 (as far as the run has samples for them).
var plotPercentiles = []float64{0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999}

// WritePlot draws r as a PNG at path: on the left the latency
// percentiles of an iteration and of the fsync, close and rename steps
// (log scale), on the right the throughput over the run in ops/s.
func WritePlot(path string, r *Result) error {
	lat, err := latencyPlot(r)
	if err != nil {
		return err
	}
	thr, err := throughputPlot(r)
	if err != nil {
		return err
	}
	img := vgimg.New(vg.Points(960), vg.Points(400))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(12), PadTop: vg.Points(6),
		PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6)}
	cs := plot.Align([][]*plot.Plot{{lat, thr}}, tiles, dc)
	lat.Draw(cs[0][0])
	thr.Draw(cs[0][1])
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// nines maps a percentile to the plot's x axis: 0.9 → 1, 0.99 → 2.
func nines(p float64) float64 { return -math.Log10(1 - p) }

func latencyPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %d client(s): latency", r.Workload, r.Clients)
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var ticks []plot.Tick
	for _, q := range plotPercentiles {
		ticks = append(ticks, plot.Tick{Value: nines(q), Label: strconv.FormatFloat(q*100, 'f', -1, 64)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Top = true
	p.Legend.Left = true
	var lines []any
	for _, h := range []struct {
		name string
		h    *Hist
	}{{"iteration", &r.Lat}, {"fsync", &r.Steps.Fsync}, {"close", &r.Steps.Close}, {"rename", &r.Steps.Rename}} {
		if pts := percentilePoints(h.h); len(pts) > 0 {
			lines = append(lines, h.name, pts)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("plot: the run recorded no latency")
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	return p, nil
}

// percentilePoints are h's percentiles in ms, for those the count resolves
// (p99.9 needs a thousand samples).
func percentilePoints(h *Hist) plotter.XYs {
	var pts plotter.XYs
	for _, q := range plotPercentiles {
		if h.Count() == 0 || (q > 0.5 && float64(h.Count()) < 1/(1-q)) {
			continue
		}
		ms := float64(h.Percentile(q)) / float64(time.Millisecond)
		pts = append(pts, plotter.XY{X: nines(q), Y: math.Max(ms, 1e-3)}) // log scale: no zero
	}
	return pts
}

func throughputPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("throughput: %.0f ops/s over the run", r.OpsPerSec())
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "ops/s"
	p.Y.Min = 0
	at, ops := Throughput(r.Timeline)
	pts := make(plotter.XYs, len(at))
	for i := range at {
		pts[i] = plotter.XY{X: at[i].Seconds(), Y: ops[i]}
	}
	if len(pts) == 0 {
		pts = plotter.XYs{{X: r.Elapsed.Seconds(), Y: r.OpsPerSec()}}
	}
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	p.Add(line, points, plotter.NewGrid())
	return p, nil
}
