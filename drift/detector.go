package drift

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// OutputName is the name the model's output has among a detector's scores.
const OutputName = "_output"

// column is one watched value of a prediction: how its values fall into
// the reference profile's bins, and the reference counts. Its last bin
// holds nulls; a categorical column's bin before it holds values the
// training set did not have among its categories.
type column struct {
	name     string
	input    int            // index among the prediction's inputs; -1: the output
	edges    []float32      // a number column's inner edges, as model inputs are float32
	cats     map[string]int // a categorical column's bins by value
	boolean  bool           // categories are "true" and "false", inputs 1 and 0
	expected []float64
}

func newColumn(fp *FeatureProfile, input int) column {
	c := column{name: fp.Name, input: input}
	if len(fp.Categories) == 0 {
		// Rounded as the inputs are: a value on an edge stays on it.
		c.edges = make([]float32, len(fp.Edges))
		for i, e := range fp.Edges {
			c.edges[i] = float32(e)
		}
		c.expected = make([]float64, len(fp.Edges)+2)
		for i, n := range fp.Counts {
			c.expected[i] = float64(n)
		}
	} else {
		c.boolean = fp.Type == "bool"
		c.cats = make(map[string]int, len(fp.Categories))
		c.expected = make([]float64, len(fp.Categories)+2)
		for i, cat := range fp.Categories {
			c.cats[cat.Value] = i
			c.expected[i] = float64(cat.Count)
		}
		c.expected[len(fp.Categories)] = float64(fp.Other)
	}
	c.expected[len(c.expected)-1] = float64(fp.Nulls)
	return c
}

// bin is the bin of a value; NaN is null.
func (c *column) bin(x float32) int {
	null := len(c.expected) - 1
	switch {
	case x != x:
		return null
	case c.cats == nil:
		return numberBin(c.edges, x)
	}
	var v string
	if c.boolean {
		v = strconv.FormatBool(x != 0)
	} else {
		v = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	if i, ok := c.cats[v]; ok {
		return i
	}
	return null - 1 // other
}

// Detector watches one model version's predictions against its reference
// profile: each watched column's values are counted in the profile's bins,
// per slide of a sliding window, and the window is scored each time it
// slides. Adding a prediction is O(1) per column; memory is the window's
// slides times the columns' bins. Windows are the sum of their slides, so
// they merge by adding counts. It is not safe for concurrent use.
type Detector struct {
	cfg     Config
	width   int // the model's inputs
	columns []column
	offs    []int // each column's first bin in a slide

	slides []slide // ring; cur is being filled
	cur    int
	full   int       // slides closed since the start, up to len(slides)
	ended  time.Time // time windows: where the slides closed so far end
	streak int       // breaching windows in a row
	// breaching holds where each of the last breaching windows of the
	// streak begins in the log, as many as a sustained breach still needs
	// besides the open window (Consecutive-1): a replay from the oldest
	// counts them again.
	breaching []int64

	window []float64 // scratch: the window's counts of one column
}

// slide is the counts of one slide of a window.
type slide struct {
	counts      []uint32
	predictions int
	first, last time.Time // prediction times
	start, end  time.Time // a time slide's bounds
	offset      int64     // of its first prediction; -1: empty
}

// NewDetector returns a detector for a model version whose predictions have
// inputs named inputs (in order), comparing with prof under cfg.
func NewDetector(cfg Config, prof *Profile, inputs []string) (*Detector, error) {
	cfg = cfg.WithDefaults()
	if ps := cfg.Check(); len(ps) > 0 {
		return nil, fmt.Errorf("drift.%s: %s", ps[0].Field, ps[0].Message)
	}
	byName := map[string]*FeatureProfile{}
	for i := range prof.Features {
		byName[prof.Features[i].Name] = &prof.Features[i]
	}
	watch := cfg.Features
	if watch == nil {
		watch = inputs
	}
	d := &Detector{cfg: cfg, width: len(inputs)}
	var missing []string
	for _, name := range watch {
		i, fp := slices.Index(inputs, name), byName[name]
		if i < 0 || fp == nil {
			missing = append(missing, name)
			continue
		}
		d.columns = append(d.columns, newColumn(fp, i))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no reference for %q: watched features must be model inputs in the profile (it has %d features)", missing, len(prof.Features))
	}
	if prof.Output != nil && cfg.watchOutput() {
		c := newColumn(prof.Output, -1)
		c.name = OutputName
		d.columns = append(d.columns, c)
	}
	if len(d.columns) == 0 {
		return nil, fmt.Errorf("nothing to watch")
	}
	width := 0
	for _, c := range d.columns {
		d.offs = append(d.offs, width)
		width += len(c.expected)
		d.window = make([]float64, max(len(d.window), len(c.expected)))
	}
	d.slides = make([]slide, cfg.panes())
	for i := range d.slides {
		d.slides[i] = slide{counts: make([]uint32, width), offset: -1}
	}
	return d, nil
}

// Config returns the detector's configuration, defaults applied.
func (d *Detector) Config() Config { return d.cfg }

// Columns names the watched columns, in the order of an Evaluation's scores.
func (d *Detector) Columns() []string {
	names := make([]string, len(d.columns))
	for i, c := range d.columns {
		names[i] = c.name
	}
	return names
}

// Add counts a prediction made at t from inputs (NaN for a missing value)
// with output out (its first value is watched), found at offset of the
// prediction log. It returns the evaluation of the window it closed, if it
// closed one.
func (d *Detector) Add(t time.Time, inputs []float32, out float32, offset int64) (*Evaluation, error) {
	if len(inputs) != d.width {
		return nil, fmt.Errorf("a prediction with %d inputs, want %d", len(inputs), d.width)
	}
	var ev *Evaluation
	s := &d.slides[d.cur]
	if d.cfg.Window.Duration > 0 {
		if s.predictions > 0 && !t.Before(s.end) {
			ev = d.close()
			s = &d.slides[d.cur]
		}
		if s.predictions == 0 {
			d.skip(t)
			s = &d.slides[d.cur]
			s.start = t.Truncate(d.cfg.Slide.Duration)
			if s.start.Before(d.ended) {
				// A prediction older than the slides closed (late, or
				// out of order) opens the slide after them.
				s.start = d.ended
			}
			s.end = s.start.Add(d.cfg.Slide.Duration)
		}
	}
	if s.predictions == 0 {
		s.first, s.offset = t, offset
	}
	s.predictions++
	s.last = t
	for i := range d.columns {
		c := &d.columns[i]
		x := out
		if c.input >= 0 {
			x = inputs[c.input]
		}
		s.counts[d.offs[i]+c.bin(x)]++
	}
	if d.cfg.Window.Count > 0 && s.predictions == d.cfg.Slide.Count {
		ev = d.close()
	}
	return ev, nil
}

// Tick closes the current slide of a time window once now is past its
// end, as the next prediction would, and returns the evaluation of the
// window it completes, if any: so that a window is scored when it ends,
// not when traffic comes again. Predictions of a closed slide that come
// later count in the slide open then. Count windows are not ticked.
func (d *Detector) Tick(now time.Time) *Evaluation {
	s := &d.slides[d.cur]
	if d.cfg.Window.Duration == 0 || s.predictions == 0 || now.Before(s.end) {
		return nil
	}
	return d.close()
}

// close closes the current slide and evaluates the window it completes,
// when the window is full and has enough predictions.
func (d *Detector) close() *Evaluation {
	d.full = min(d.full+1, len(d.slides))
	var ev *Evaluation
	if d.full == len(d.slides) {
		ev = d.evaluate()
	}
	d.ended = d.slides[d.cur].end
	d.advance()
	return ev
}

// skip counts the slides of a time window that no prediction fell in,
// from the last one closed up to the slide of t, as empty slides.
func (d *Detector) skip(t time.Time) {
	if d.ended.IsZero() {
		return
	}
	skipped := t.Sub(d.ended) / d.cfg.Slide.Duration
	for range min(int(skipped), len(d.slides)) {
		d.full = min(d.full+1, len(d.slides))
		if d.full == len(d.slides) && d.predictions() < d.cfg.MinSamples {
			d.ResetStreak() // a window too empty to score breaks a breach
		}
		d.advance()
	}
	d.ended = d.ended.Add(max(0, skipped) * d.cfg.Slide.Duration)
}

// advance makes the oldest slide, emptied, the current one.
func (d *Detector) advance() {
	d.cur = (d.cur + 1) % len(d.slides)
	s := &d.slides[d.cur]
	clear(s.counts)
	*s = slide{counts: s.counts, offset: -1}
}

// Evaluation is the scores of a window.
type Evaluation struct {
	Start, End  time.Time // the window's bounds in prediction time
	Predictions int
	Scores      []Score // per watched column
	Drifted     int     // columns that drifted
	Breach      bool    // the window breached the rule
	Streak      int     // breaching windows in a row, this one included
}

// Score is a column's drift in a window.
type Score struct {
	Feature string  `json:"feature"`
	PSI     float64 `json:"psi"`
	JS      float64 `json:"js"`
	Drifted bool    `json:"drifted"`
}

// Sustained says whether the breach has lasted cfg.Consecutive windows.
func (e *Evaluation) Sustained(cfg Config) bool {
	return e.Breach && e.Streak >= cfg.WithDefaults().Consecutive
}

func (d *Detector) evaluate() *Evaluation {
	ev := &Evaluation{Scores: make([]Score, len(d.columns))}
	oldest := d.slides[(d.cur+1)%len(d.slides)]
	cur := d.slides[d.cur]
	if d.cfg.Window.Duration > 0 {
		ev.Start, ev.End = cur.end.Add(-d.cfg.Window.Duration), cur.end
	} else {
		ev.Start, ev.End = oldest.first, cur.last
	}
	ev.Predictions = d.predictions()
	if ev.Predictions < d.cfg.MinSamples {
		d.ResetStreak() // not scored, so not breaching: the breach is not sustained
		return nil
	}
	for i, c := range d.columns {
		w := d.window[:len(c.expected)]
		clear(w)
		for _, s := range d.slides {
			for b, n := range s.counts[d.offs[i] : d.offs[i]+len(w)] {
				w[b] += float64(n)
			}
		}
		sc := Score{Feature: c.name, PSI: PSI(w, c.expected), JS: JS(w, c.expected)}
		sc.Drifted = d.cfg.PSI > 0 && sc.PSI >= d.cfg.PSI || d.cfg.JS > 0 && sc.JS >= d.cfg.JS
		if sc.Drifted {
			ev.Drifted++
		}
		ev.Scores[i] = sc
	}
	switch d.cfg.Rule {
	case RuleShare:
		ev.Breach = float64(ev.Drifted) >= d.cfg.Share*float64(len(d.columns))-1e-9
	default:
		ev.Breach = ev.Drifted > 0
	}
	if ev.Breach {
		d.streak++
		if keep := d.cfg.Consecutive - 1; keep > 0 {
			if len(d.breaching) == keep {
				d.breaching = append(d.breaching[:0], d.breaching[1:]...)
			}
			d.breaching = append(d.breaching, d.windowFrom())
		}
	} else {
		d.ResetStreak()
	}
	ev.Streak = d.streak
	return ev
}

// predictions is the number of predictions in the window.
func (d *Detector) predictions() int {
	n := 0
	for _, s := range d.slides {
		n += s.predictions
	}
	return n
}

// ResetStreak starts counting breaching windows afresh: after an event, the
// next one needs a breach sustained anew.
func (d *Detector) ResetStreak() {
	d.streak = 0
	d.breaching = d.breaching[:0]
}

// From is the offset of the oldest prediction the detector's window holds,
// or of the first of the breaching windows a sustained breach still needs,
// or -1 if there is none: where to read the log again to rebuild the
// window and the breach in progress.
func (d *Detector) From() int64 {
	from := d.windowFrom()
	if len(d.breaching) > 0 && (from < 0 || d.breaching[0] < from) {
		from = d.breaching[0]
	}
	return from
}

// windowFrom is the offset of the oldest prediction the window holds, or -1.
func (d *Detector) windowFrom() int64 {
	from := int64(-1)
	for _, s := range d.slides {
		if s.offset >= 0 && (from < 0 || s.offset < from) {
			from = s.offset
		}
	}
	return from
}
