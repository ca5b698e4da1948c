package drift

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func testProfile() *Profile {
	return &Profile{Rows: 40, Features: []FeatureProfile{
		{Name: "x", Type: "float", Count: 40, Edges: []float64{1, 2, 4}, Counts: []int{10, 10, 10, 10}},
		{Name: "b", Type: "bool", Count: 36, Nulls: 4, Categories: []Category{{"true", 30}, {"false", 6}}},
		{Name: "unwatched", Type: "int", Count: 1, Counts: []int{1}},
	}, Output: &FeatureProfile{Name: "p", Type: "float", Count: 40, Edges: []float64{0.5}, Counts: []int{20, 20}}}
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func mustDetector(t *testing.T, cfg Config) *Detector {
	t.Helper()
	d, err := NewDetector(cfg, testProfile(), []string{"b", "x"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBins(t *testing.T) {
	d := mustDetector(t, Config{})
	if got, want := d.Columns(), []string{"b", "x", OutputName}; !slices.Equal(got, want) {
		t.Fatalf("columns %q, want %q", got, want)
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		col  int
		x    float32
		want int
	}{
		{1, -5, 0}, {1, 0.99, 0}, {1, 1, 1}, {1, 1.5, 1}, {1, 2, 2}, {1, 3.9, 2}, {1, 4, 3}, {1, 1e9, 3}, {1, nan, 4},
		{0, 1, 0}, {0, 0, 1}, {0, 7, 0}, {0, nan, 3},
		{2, 0.1, 0}, {2, 0.5, 1}, {2, nan, 2},
	} {
		if got := d.columns[tc.col].bin(tc.x); got != tc.want {
			t.Errorf("%s: bin(%v) = %d, want %d", d.columns[tc.col].name, tc.x, got, tc.want)
		}
	}
	// Reference counts: values, other (categories), then nulls.
	if got := d.columns[0].expected; !slices.Equal(got, []float64{30, 6, 0, 4}) {
		t.Errorf("expected counts of b: %v", got)
	}
	if got := d.columns[1].expected; !slices.Equal(got, []float64{10, 10, 10, 10, 0}) {
		t.Errorf("expected counts of x: %v", got)
	}
}

// TestInputWidth: a prediction with more or fewer inputs than the model
// has is not of this model, and is refused rather than binned.
func TestInputWidth(t *testing.T) {
	d := mustDetector(t, Config{})
	for _, in := range [][]float32{{1}, {1, 2, 3}} {
		if _, err := d.Add(time.Unix(0, 0), in, 0.5, 0); err == nil || !strings.Contains(err.Error(), "want 2") {
			t.Errorf("%d inputs: %v, want an error", len(in), err)
		}
	}
	if _, err := d.Add(time.Unix(0, 0), []float32{1, 2}, 0.5, 0); err != nil {
		t.Errorf("2 inputs: %v", err)
	}
}

func TestCategoryOther(t *testing.T) {
	prof := &Profile{Features: []FeatureProfile{{Name: "c", Type: "int", Count: 3, Categories: []Category{{"7", 2}, {"1.5", 1}}, Other: 5}}}
	d, err := NewDetector(Config{}, prof, []string{"c"})
	if err != nil {
		t.Fatal(err)
	}
	c := d.columns[0]
	for x, want := range map[float32]int{7: 0, 1.5: 1, 8: 2} {
		if got := c.bin(x); got != want {
			t.Errorf("bin(%v) = %d, want %d", x, got, want)
		}
	}
}

// A count window smaller than the default minimum sample is scored when
// full: the minimum defaults to the window's size.
func TestSmallWindowScored(t *testing.T) {
	d := mustDetector(t, Config{Window: Window{Count: 4}, Consecutive: 1})
	var ev *Evaluation
	for i := range 4 {
		var err error
		if ev, err = d.Add(t0.Add(time.Duration(i)*time.Second), []float32{1, 3}, 0.7, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if ev == nil || ev.Predictions != 4 {
		t.Fatalf("evaluation %+v after a full window of 4, want one of 4 predictions", ev)
	}
	if ps := (Config{Window: Window{Count: 4}, MinSamples: 5}).Check(); len(ps) != 1 || ps[0].Field != "min_samples" {
		t.Errorf("min_samples above the window: problems %+v, want one of min_samples", ps)
	}
}

func TestTumblingCountWindow(t *testing.T) {
	d := mustDetector(t, Config{Window: Window{Count: 4}, MinSamples: 1, Consecutive: 2})
	// b: true, true, null, false; x: 0, 1.5, 3, 3; output 0.7 ×4.
	rows := []struct {
		b, x float32
	}{{1, 0}, {1, 1.5}, {float32(math.NaN()), 3}, {0, 3}}
	var ev *Evaluation
	for i, r := range rows {
		var err error
		ev, err = d.Add(t0.Add(time.Duration(i)*time.Second), []float32{r.b, r.x}, 0.7, int64(100+i))
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 && ev != nil {
			t.Fatalf("evaluation after %d predictions", i+1)
		}
	}
	if ev == nil {
		t.Fatal("no evaluation after a full window")
	}
	if ev.Predictions != 4 || !ev.Start.Equal(t0) || !ev.End.Equal(t0.Add(3*time.Second)) {
		t.Errorf("window %v–%v with %d predictions", ev.Start, ev.End, ev.Predictions)
	}
	wantB := []float64{2, 1, 0, 1}
	wantX := []float64{1, 1, 2, 0, 0}
	wantOut := []float64{0, 4, 0}
	d2 := mustDetector(t, Config{})
	for i, want := range [][]float64{wantB, wantX, wantOut} {
		s := ev.Scores[i]
		if s.PSI != PSI(want, d2.columns[i].expected) || s.JS != JS(want, d2.columns[i].expected) {
			t.Errorf("%s: scores %+v, want those of counts %v", s.Feature, s, want)
		}
	}
	// The output is wholly in one bin of two: PSI (1-½)·ln(1/½) + (ε-½)·ln(ε/½).
	if want := 0.5*math.Log(2) + (Epsilon-0.5)*math.Log(2*Epsilon); math.Abs(ev.Scores[2].PSI-want) > 1e-12 {
		t.Errorf("output PSI %g, want %g", ev.Scores[2].PSI, want)
	}
	if !ev.Breach || ev.Streak != 1 || ev.Sustained(d.Config()) {
		t.Errorf("breach %v streak %d", ev.Breach, ev.Streak)
	}
	// The window is closed, but a replay must count it again: it is a
	// breaching window of the sustained breach to come.
	if d.From() != 100 {
		t.Errorf("From() = %d after a closed tumbling window that breached, want 100", d.From())
	}
	for i := range 4 {
		ev, _ = d.Add(t0.Add(time.Hour), []float32{1, 0}, 0.7, int64(104+i))
		if i == 0 && d.From() != 100 {
			t.Errorf("From() = %d, want 100", d.From())
		}
	}
	if ev == nil || ev.Streak != 2 || !ev.Sustained(d.Config()) {
		t.Fatalf("second breaching window: %+v", ev)
	}
	if d.From() != 104 { // a breach going on needs its last window
		t.Errorf("From() = %d after the second breaching window, want 104", d.From())
	}
	d.ResetStreak()
	if d.From() != -1 {
		t.Errorf("From() = %d after ResetStreak, want -1", d.From())
	}
	ev, _ = addN(d, 4, []float32{1, 0}, 0.7)
	if ev.Streak != 1 {
		t.Errorf("streak %d after ResetStreak, want 1", ev.Streak)
	}
}

func addN(d *Detector, n int, in []float32, out float32) (*Evaluation, error) {
	var last *Evaluation
	for range n {
		ev, err := d.Add(t0, in, out, 0)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			last = ev
		}
	}
	return last, nil
}

// A sliding window's scores are those of the last Window predictions,
// counted afresh.
func TestSlidingWindowMatchesRecount(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// Consecutive 1: no breach in progress holds From back.
	d := mustDetector(t, Config{Window: Window{Count: 40}, Slide: Window{Count: 10}, MinSamples: 1, Consecutive: 1})
	type row struct{ b, x, out float32 }
	var rows []row
	evals := 0
	for i := range 2000 {
		rw := row{float32(r.IntN(2)), float32(r.NormFloat64()*2 + 2), float32(r.Float64())}
		if r.IntN(10) == 0 {
			rw.b = float32(math.NaN())
		}
		rows = append(rows, rw)
		ev, err := d.Add(t0.Add(time.Duration(i)*time.Millisecond), []float32{rw.b, rw.x}, rw.out, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if (i+1)%10 == 0 && i >= 39 {
			if ev == nil {
				t.Fatalf("no evaluation after prediction %d", i)
			}
			evals++
			last := rows[len(rows)-40:]
			for c := range d.columns {
				want := make([]float64, len(d.columns[c].expected))
				for _, rw := range last {
					x := []float32{rw.b, rw.x, rw.out}[c]
					want[d.columns[c].bin(x)]++
				}
				if s := ev.Scores[c]; s.PSI != PSI(want, d.columns[c].expected) || s.JS != JS(want, d.columns[c].expected) {
					t.Fatalf("prediction %d, %s: %+v, want scores of %v", i, s.Feature, s, want)
				}
			}
			if ev.Predictions != 40 || !ev.Start.Equal(t0.Add(time.Duration(i-39)*time.Millisecond)) {
				t.Fatalf("window of %d predictions from %v", ev.Predictions, ev.Start)
			}
			if from := d.From(); from != int64(i-29) {
				t.Fatalf("From() = %d after prediction %d, want %d", from, i, i-29)
			}
		} else if ev != nil {
			t.Fatalf("evaluation after prediction %d", i)
		}
	}
	if evals != 197 {
		t.Errorf("%d evaluations, want 197", evals)
	}
}

func TestTimeWindow(t *testing.T) {
	d := mustDetector(t, Config{Window: Window{Duration: time.Minute}, Slide: Window{Duration: 20 * time.Second}, MinSamples: 4})
	add := func(at time.Duration) *Evaluation {
		t.Helper()
		ev, err := d.Add(t0.Add(at), []float32{1, 3}, 0.2, int64(at/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for _, at := range []time.Duration{1 * time.Second, 25 * time.Second, 41 * time.Second, 59 * time.Second} {
		if ev := add(at); ev != nil {
			t.Fatalf("evaluation at %v, in the first window", at)
		}
	}
	// The first prediction past a minute closes the first window.
	ev := add(61 * time.Second)
	if ev == nil || ev.Predictions != 4 || !ev.Start.Equal(t0) || !ev.End.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first window: %+v", ev)
	}
	// A gap: the prediction at 125s closes the window [20s, 80s); the
	// slides [80s, 100s) and [100s, 120s) stay empty.
	ev = add(125 * time.Second)
	if ev == nil || ev.Predictions != 4 || !ev.Start.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("window [20s, 80s): %+v", ev)
	}
	add(126 * time.Second)
	add(127 * time.Second)
	if ev := add(141 * time.Second); ev != nil { // [80s, 140s): 3 predictions
		t.Fatalf("evaluation of a window with too few predictions: %+v", ev)
	}
	add(142 * time.Second)
	ev = add(161 * time.Second) // [100s, 160s)
	if ev == nil || ev.Predictions != 5 || !ev.Start.Equal(t0.Add(100*time.Second)) || !ev.End.Equal(t0.Add(160*time.Second)) {
		t.Fatalf("window after the gap: %+v", ev)
	}
	if from := d.From(); from != 125 {
		t.Errorf("From() = %d, want 125", from)
	}
}

// TestTickClosesTimeWindows: a time window is scored once the clock passes
// its end, without waiting for the next prediction, and ticking changes no
// evaluation: over random streams of predictions with gaps, a detector
// ticked at random times between predictions gives the evaluations of one
// never ticked, and From the same offsets.
func TestTickClosesTimeWindows(t *testing.T) {
	cfg := Config{Window: Window{Duration: time.Minute}, Slide: Window{Duration: 20 * time.Second}, MinSamples: 3, Consecutive: 2}
	d := mustDetector(t, cfg)
	for _, at := range []time.Duration{time.Second, 25 * time.Second, 41 * time.Second, 59 * time.Second} {
		if _, err := d.Add(t0.Add(at), []float32{1, 3}, 0.2, int64(at/time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if ev := d.Tick(t0.Add(time.Minute - time.Millisecond)); ev != nil {
		t.Fatalf("tick before the window's end: %+v", ev)
	}
	if ev := d.Tick(t0.Add(time.Minute)); ev == nil || ev.Predictions != 4 || !ev.End.Equal(t0.Add(time.Minute)) {
		t.Fatalf("tick at the window's end: %+v, want the window of 4 predictions", ev)
	}
	if ev := d.Tick(t0.Add(61 * time.Second)); ev != nil {
		t.Fatalf("a second tick with no prediction since: %+v", ev)
	}
	// A late prediction of the closed slide counts in the next one: the
	// window [20s, 80s) holds it.
	for _, at := range []time.Duration{59500 * time.Millisecond, 81 * time.Second} {
		ev, err := d.Add(t0.Add(at), []float32{1, 3}, 0.2, int64(at/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if at == 81*time.Second && (ev == nil || ev.Predictions != 4 || !ev.Start.Equal(t0.Add(20*time.Second))) {
			t.Fatalf("the window after a late prediction: %+v, want [20s, 80s) with 4 predictions", ev)
		}
	}

	r := rand.New(rand.NewPCG(5, 6))
	for run := range 200 {
		plain, ticked := mustDetector(t, cfg), mustDetector(t, cfg)
		var want, got []Evaluation
		at := t0
		for i := range 300 {
			gap := time.Duration(r.IntN(3000)) * time.Millisecond
			if r.IntN(20) == 0 {
				gap = time.Duration(r.IntN(300)) * time.Second
			}
			next := at.Add(gap)
			if r.IntN(3) == 0 { // a tick between two predictions
				if ev := ticked.Tick(at.Add(time.Duration(r.Int64N(int64(gap) + 1)))); ev != nil {
					got = append(got, *ev)
				}
			}
			at = next
			in := []float32{float32(r.IntN(2)), float32(r.NormFloat64()*2 + 2)}
			if r.IntN(4) == 0 {
				in[1] = 9 // drifted
			}
			out := float32(r.Float64())
			for _, dd := range []struct {
				d   *Detector
				evs *[]Evaluation
			}{{plain, &want}, {ticked, &got}} {
				ev, err := dd.d.Add(at, in, out, int64(i))
				if err != nil {
					t.Fatal(err)
				}
				if ev != nil {
					*dd.evs = append(*dd.evs, *ev)
				}
			}
			if plain.From() != ticked.From() {
				t.Fatalf("run %d, prediction %d: From %d ticked, %d not", run, i, ticked.From(), plain.From())
			}
		}
		if ev := plain.Tick(at.Add(time.Hour)); ev != nil { // the last window, in both
			want = append(want, *ev)
		}
		if ev := ticked.Tick(at.Add(time.Hour)); ev != nil {
			got = append(got, *ev)
		}
		if len(want) < 10 {
			t.Fatalf("run %d: %d evaluations: too few to compare", run, len(want))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("run %d: ticked evaluations differ:\n got %+v\nwant %+v", run, got, want)
		}
	}
}

func TestShareRule(t *testing.T) {
	// x drifts (all values in one bin), b and the output do not: 1/3 drifted.
	for _, tc := range []struct {
		share  float64
		breach bool
	}{{0.3, true}, {0.34, false}} {
		d := mustDetector(t, Config{Window: Window{Count: 40}, MinSamples: 1, Rule: RuleShare, Share: tc.share})
		var ev *Evaluation
		for i := range 40 {
			b := float32(math.NaN()) // as in the profile: 30 true, 6 false, 4 null
			switch {
			case i < 30:
				b = 1
			case i < 36:
				b = 0
			}
			out := float32(i%2) * 0.9
			ev, _ = d.Add(t0, []float32{b, 100}, out, int64(i))
		}
		if ev == nil || ev.Drifted != 1 || ev.Breach != tc.breach {
			t.Errorf("share %g: %+v", tc.share, ev)
		}
	}
}

func TestNewDetectorErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		inputs []string
	}{
		{"unknown feature", Config{Features: []string{"nope"}}, []string{"b", "x"}},
		{"input without a reference", Config{}, []string{"b", "x", "y"}},
		{"slide not dividing", Config{Window: Window{Count: 10}, Slide: Window{Count: 3}}, []string{"x"}},
		{"mixed units", Config{Window: Window{Count: 10}, Slide: Window{Duration: time.Second}}, []string{"x"}},
		{"rule", Config{Rule: "most"}, []string{"x"}},
		{"share", Config{Rule: RuleShare}, []string{"x"}},
	} {
		if _, err := NewDetector(tc.cfg, testProfile(), tc.inputs); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := NewDetector(Config{}, testProfile(), []string{"x"}); err != nil {
		t.Errorf("a valid detector: %v", err)
	}
	d := mustDetector(t, Config{})
	if _, err := d.Add(t0, []float32{1}, 0, 0); err == nil {
		t.Error("a prediction with too few inputs: no error")
	}
}

// Profiles are outside bytes: one whose bins do not add up is refused when
// loaded, never a panic later.
func TestLoadProfileRejects(t *testing.T) {
	for name, fp := range map[string]string{
		"counts beyond edges":    `{"name": "x", "count": 0, "edges": [1], "counts": [1, 2, 3, 4]}`,
		"counts short":           `{"name": "x", "count": 3, "edges": [1, 2], "counts": [3]}`,
		"sum differs":            `{"name": "x", "count": 5, "edges": [1], "counts": [1, 1]}`,
		"edges not increasing":   `{"name": "x", "count": 2, "edges": [2, 2], "counts": [1, 1, 0]}`,
		"both kinds":             `{"name": "x", "count": 2, "edges": [1], "counts": [1, 1], "categories": [{"value": "a", "count": 2}]}`,
		"negative":               `{"name": "x", "count": -1}`,
		"sum overflows to count": `{"name": "x", "count": 0, "edges": [1, 2], "counts": [9223372036854775807, 9223372036854775807, 2]}`,
	} {
		path := filepath.Join(t.TempDir(), "profile.json")
		if err := os.WriteFile(path, []byte(`{"rows": 1, "features": [`+fp+`]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadProfile(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// TestStreakBrokenByUnscoredWindows: windows in a row means no window
// between: one with too few predictions to be scored, or a gap of empty
// ones, is not a breaching window and starts the count afresh.
func TestStreakBrokenByUnscoredWindows(t *testing.T) {
	for _, tc := range []struct {
		name   string
		middle []time.Duration // predictions between two breaching windows
		second time.Duration   // the second breaching window's start
	}{
		{"too few predictions", []time.Duration{time.Minute + time.Second}, 2 * time.Minute},
		{"a gap", nil, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDetector(t, Config{Window: Window{Duration: time.Minute}, MinSamples: 3, Consecutive: 2})
			var evs []*Evaluation
			add := func(at time.Duration) {
				t.Helper()
				ev, err := d.Add(t0.Add(at), []float32{1, 3}, 0.2, int64(at/time.Second)) // x drifted: all in one bin
				if err != nil {
					t.Fatal(err)
				}
				if ev != nil {
					evs = append(evs, ev)
				}
			}
			for _, at := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
				add(at)
			}
			for _, at := range tc.middle {
				add(at)
			}
			// Another breaching window, closed by the prediction after it.
			for _, at := range []time.Duration{0, time.Second, 2 * time.Second, time.Minute} {
				add(tc.second + at)
			}
			if len(evs) != 2 || !evs[0].Breach || !evs[1].Breach {
				t.Fatalf("evaluations %+v, want 2 breaching", evs)
			}
			if evs[1].Streak != 1 || evs[1].Sustained(d.Config()) {
				t.Errorf("second breaching window: streak %d, sustained %v; want 1, not sustained",
					evs[1].Streak, evs[1].Sustained(d.Config()))
			}
		})
	}
}

// TestConfigThresholdProblems: each bad threshold is a problem of its own
// key, so that model.yaml's error points at the line to fix.
func TestConfigThresholdProblems(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{JS: 1.5}, []string{"js"}},
		{Config{PSI: -0.1}, []string{"psi"}},
		{Config{PSI: -0.1, JS: -1}, []string{"psi", "js"}},
	} {
		var got []string
		for _, p := range tc.cfg.Check() {
			got = append(got, p.Field)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("psi %v js %v: problems of %q, want %q", tc.cfg.PSI, tc.cfg.JS, got, tc.want)
		}
	}
}

// TestFromKeepsBreachInProgress: From goes back to the breaching windows a
// sustained breach still needs, and no further however long the breach
// lasts (as it does while a model cools down from its event).
func TestFromKeepsBreachInProgress(t *testing.T) {
	d := mustDetector(t, Config{Window: Window{Count: 4}, MinSamples: 1, Consecutive: 3, Features: []string{"x"}, Output: new(false)})
	add := func(off int, x float32) *Evaluation {
		t.Helper()
		ev, err := d.Add(t0.Add(time.Duration(off)*time.Second), []float32{1, x}, 0.7, int64(off))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for i := range 40 { // x drifted: 10 breaching windows, no event
		ev := add(i, 3)
		if i%4 != 3 {
			continue
		}
		k := i / 4 // the window closed
		if ev == nil || ev.Streak != k+1 {
			t.Fatalf("window %d: %+v", k, ev)
		}
		if want := int64(4 * max(k-1, 0)); d.From() != want { // this window and the one before
			t.Fatalf("From() = %d after window %d, want %d", d.From(), k, want)
		}
	}
	// A window that does not breach ends the breach: only the open window
	// is kept.
	for i, x := range []float32{0, 1.5, 3, 5} { // the profile's distribution
		if ev := add(40+i, x); i == 3 && (ev == nil || ev.Breach) {
			t.Fatalf("window of the profile's distribution: %+v", ev)
		}
	}
	add(44, 0)
	if d.From() != 44 {
		t.Errorf("From() = %d after the breach ended, want 44", d.From())
	}
}
