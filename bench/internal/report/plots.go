package report

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plots writes throughput.png, latency_percentiles.png and latency_cdf.png into dir.
func (r *Results) Plots(dir string) ([]string, error) {
	var files []string
	for _, f := range []struct {
		name string
		make func() (*plot.Plot, error)
	}{
		{"throughput.png", r.throughputPlot},
		{"latency_percentiles.png", r.percentilePlot},
		{"latency_cdf.png", r.cdfPlot},
		{"scaling_n.png", func() (*plot.Plot, error) { return r.scalingPlot(true) }},
		{"scaling_k.png", func() (*plot.Plot, error) { return r.scalingPlot(false) }},
	} {
		p, err := f.make()
		if err != nil {
			return files, fmt.Errorf("report: %s: %w", f.name, err)
		}
		if p == nil {
			continue
		}
		path := filepath.Join(dir, f.name)
		if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
			return files, fmt.Errorf("report: %s: %w", f.name, err)
		}
		files = append(files, path)
	}
	return files, nil
}

// colorIndex keeps a target's colour the same in every plot and every run.
func colorIndex(name string) int {
	switch name {
	case "softhsm":
		return 0
	case "gorsa":
		return 1
	case "tchsm":
		return 2
	case "p11":
		return 3
	}
	return 5
}

// niceTicks labels about six round values (1, 2 or 5 × 10^k apart) between min and max.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 4, 64)}}
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		if half := v + step/2; half < hi {
			ts = append(ts, plot.Tick{Value: half})
		}
	}
	return ts
}

func (r *Results) measured() []*Target {
	var out []*Target
	for _, t := range r.Targets {
		if t.Sweep != nil && len(t.Sweep.Steps) > 0 && t.BestSigPerSec > 0 {
			out = append(out, t)
		}
	}
	return out
}

func (r *Results) throughputPlot() (*plot.Plot, error) {
	ts := r.measured()
	if len(ts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Padding = vg.Points(6)
	p.Title.Text = fmt.Sprintf("Signing throughput vs concurrency (RSA-%d, median of %d)", r.Config.Bits, r.Config.Reps)
	p.X.Label.Text = "concurrent client goroutines (one PKCS#11 session each)"
	p.Y.Label.Text = "signatures / s"
	p.X.Scale = plot.LogScale{}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(6)
	p.Legend.YOffs = -vg.Points(6)
	maxC, maxY := 1, 0.0
	for _, t := range ts {
		xy := make(plotter.XYs, len(t.Sweep.Steps))
		for j, s := range t.Sweep.Steps {
			xy[j].X, xy[j].Y = float64(s.Concurrency), s.SigPerSec
			maxC = max(maxC, s.Concurrency)
			maxY = max(maxY, s.SigPerSec)
		}
		l, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(colorIndex(t.Name))
		l.Width = vg.Points(2)
		sc.Color = plotutil.Color(colorIndex(t.Name))
		sc.Shape = plotutil.Shape(colorIndex(t.Name))
		p.Add(l, sc)
		p.Legend.Add(fmt.Sprintf("%s (best %.0f/s)", t.Name, t.BestSigPerSec), l, sc)
	}
	if l := r.Limit; l != nil && l.Limit > 0 {
		hl, err := plotter.NewLine(plotter.XYs{{X: 1, Y: l.Limit}, {X: float64(maxC), Y: l.Limit}})
		if err != nil {
			return nil, err
		}
		hl.Color = plotutil.Color(colorIndex("tchsm"))
		hl.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		hl.Width = vg.Points(1.5)
		p.Add(hl)
		p.Legend.Add(fmt.Sprintf("threshold limit C·r/k = %.0f/s (k=%d, C=%d)", l.Limit, l.K, l.Cores), hl)
		maxY = max(maxY, l.Limit)
	}
	var ticks []plot.Tick
	for c := 1; c <= maxC; c *= 2 {
		ticks = append(ticks, plot.Tick{Value: float64(c), Label: strconv.Itoa(c)})
	}
	if ticks[len(ticks)-1].Value != float64(maxC) {
		ticks = append(ticks, plot.Tick{Value: float64(maxC), Label: strconv.Itoa(maxC)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = 0.9, float64(maxC)*1.1
	p.Y.Min, p.Y.Max = 0, maxY*1.3
	p.Y.Tick.Marker = niceTicks{}
	// Targets an order of magnitude apart (tchsm next to SoftHSM2): a log scale keeps the slow
	// ones readable.
	minY := math.Inf(1)
	for _, t := range ts {
		for _, s := range t.Sweep.Steps {
			if s.SigPerSec > 0 {
				minY = math.Min(minY, s.SigPerSec)
			}
		}
	}
	if maxY/minY > 8 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = minY/2, maxY*4
		p.Y.Label.Text = "signatures / s (log scale)"
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

func (r *Results) percentilePlot() (*plot.Plot, error) {
	ts := r.measured()
	if len(ts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Padding = vg.Points(6)
	p.Title.Text = fmt.Sprintf("Latency at each target's knee (lowest concurrency with ≥95%% of best throughput, RSA-%d)", r.Config.Bits)
	p.Y.Label.Text = "ms per signature"
	p.Legend.Top = true
	p.Legend.Left = true
	names := make([]string, len(ts))
	series := []struct {
		label string
		get   func(t *Target) float64
	}{
		{"p50", func(t *Target) float64 { return t.KneeLatency.P50 }},
		{"p95", func(t *Target) float64 { return t.KneeLatency.P95 }},
		{"p99", func(t *Target) float64 { return t.KneeLatency.P99 }},
	}
	w := vg.Points(28)
	maxY := 0.0
	for i, s := range series {
		vals := make(plotter.Values, len(ts))
		for j, t := range ts {
			vals[j] = s.get(t)
			maxY = max(maxY, vals[j])
			names[j] = fmt.Sprintf("%s (c=%d, %.0f/s)", t.Name, t.KneeConcurrency, t.KneeSigPerSec)
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(i-1) * w
		p.Add(b)
		p.Legend.Add(s.label, b)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.7, float64(len(ts))-0.3
	p.Y.Min, p.Y.Max = 0, maxY*1.2
	p.Y.Tick.Marker = niceTicks{}
	p.Add(plotter.NewGrid())
	return p, nil
}

func (r *Results) cdfPlot() (*plot.Plot, error) {
	ts := r.measured()
	if len(ts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Padding = vg.Points(6)
	p.Title.Text = fmt.Sprintf("Latency distribution at each target's knee (RSA-%d)", r.Config.Bits)
	p.X.Label.Text = "ms per signature (log scale)"
	p.Y.Label.Text = "fraction of signatures ≤ x"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.YOffs = vg.Points(4)
	lo, hi := math.Inf(1), 0.0
	for _, t := range ts {
		q := t.KneeStep().Quantiles
		var xy plotter.XYs
		for j, v := range q {
			if v <= 0 {
				continue
			}
			xy = append(xy, plotter.XY{X: v, Y: float64(j) / 100})
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(colorIndex(t.Name))
		l.Width = vg.Points(2)
		l.StepStyle = plotter.PostStep
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (c=%d)", t.Name, t.KneeConcurrency), l)
	}
	if hi == 0 {
		return nil, nil
	}
	p.X.Min, p.X.Max = lo*0.8, hi*1.25
	p.Y.Min, p.Y.Max = 0, 1.02
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Add(plotter.NewGrid())
	return p, nil
}

// scalingPlot draws tchsm throughput against n at fixed k (byN) or against k at fixed n, with
// the limit C·r/k and, for byN, the separate-servers model n·C·r/k.
func (r *Results) scalingPlot(byN bool) (*plot.Plot, error) {
	if r.Scaling == nil {
		return nil, nil
	}
	pts := r.Scaling.FixedN
	if byN {
		pts = r.Scaling.FixedK
	}
	var meas, lim, model plotter.XYs
	for _, p := range pts {
		x := float64(p.K)
		if byN {
			x = float64(p.N)
		}
		if p.SigPerSec > 0 {
			meas = append(meas, plotter.XY{X: x, Y: p.SigPerSec})
		}
		if p.Limit > 0 {
			lim = append(lim, plotter.XY{X: x, Y: p.Limit})
			if byN {
				model = append(model, plotter.XY{X: x, Y: p.Limit * float64(p.N)})
			}
		}
	}
	if len(meas) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Padding = vg.Points(6)
	p.Y.Label.Text = "signatures / s"
	if byN {
		p.Title.Text = fmt.Sprintf("tchsm throughput vs n at k = %d (RSA-%d, all nodes on this machine)", pts[0].K, r.Config.Bits)
		p.X.Label.Text = "n (nodes)"
	} else {
		p.Title.Text = fmt.Sprintf("tchsm throughput vs k at n = %d (RSA-%d, all nodes on this machine)", pts[0].N, r.Config.Bits)
		p.X.Label.Text = "k (shares per signature)"
	}
	p.Legend.Top = true
	maxY := 0.0
	add := func(xy plotter.XYs, label string, ci int, dashed bool) error {
		if len(xy) == 0 {
			return nil
		}
		l, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		l.Color, sc.Color = plotutil.Color(ci), plotutil.Color(ci)
		l.Width = vg.Points(2)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		}
		p.Add(l, sc)
		p.Legend.Add(label, l, sc)
		for _, v := range xy {
			maxY = max(maxY, v.Y)
		}
		return nil
	}
	if err := add(meas, "measured (best concurrency)", colorIndex("tchsm"), false); err != nil {
		return nil, err
	}
	if err := add(lim, "limit C·r/k (one machine)", 4, true); err != nil {
		return nil, err
	}
	if err := add(model, "model n·C·r/k (n separate servers)", 6, true); err != nil {
		return nil, err
	}
	p.Y.Min, p.Y.Max = 0, maxY*1.3
	p.Y.Tick.Marker = niceTicks{}
	var ticks []plot.Tick
	for _, v := range meas {
		ticks = append(ticks, plot.Tick{Value: v.X, Label: strconv.Itoa(int(v.X))})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = meas[0].X-0.3, meas[len(meas)-1].X+0.3
	p.Add(plotter.NewGrid())
	return p, nil
}
