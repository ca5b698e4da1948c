package drift

import (
	"encoding/json"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzLoadProfile reads arbitrary bytes as a profile file, as a model
// version's profile.json: LoadProfile returns a profile or an error naming
// the file, never a panic. A profile it loads keeps its promise (counts
// non-negative and adding up to each feature's count, edges finite and
// increasing), and builds a detector over its own features, under the
// default configuration and under windows of one prediction, into which
// rows of numbers (edges, categories, zeros, nulls) go without error: each
// window of one is scored, PSI within [0, MaxPSI] and JS within [0, 1].
// Its seeds are the fraud demo's profile and the detector tests'.
func FuzzLoadProfile(f *testing.F) {
	demo, err := os.ReadFile("../examples/fraud/models/fraud/1/profile.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	for _, p := range []*Profile{
		testProfile(),
		{Features: []FeatureProfile{{Name: "c", Type: "int", Count: 3, Categories: []Category{{"7", 2}, {"1.5", 1}}, Other: 5}}},
		{Output: &FeatureProfile{Name: "p", Type: "float", Count: 2, Nulls: 1, Edges: []float64{-1e30}, Counts: []int{1, 1}}},
		{Features: []FeatureProfile{{Name: "empty", Type: "float"}}},
	} {
		b, err := json.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"rows": 1, "features": [{"name": "x", "count": 5, "edges": [1], "counts": [1, 1]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "profile.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := LoadProfile(path)
		if err != nil {
			if p != nil {
				t.Fatalf("a profile along with the error %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		fps := slices.Concat(p.Features, ptrValue(p.Output))
		for _, fp := range fps {
			checkLoaded(t, fp)
		}
		names := make([]string, len(p.Features))
		for i, fp := range p.Features {
			names[i] = fp.Name
		}
		rows := fuzzRows(p)
		for _, cfg := range []Config{{}, {Window: Window{Count: 1}}} {
			d, err := NewDetector(cfg, p, names)
			if len(fps) == 0 {
				if err == nil {
					t.Fatal("a detector of a profile without features")
				}
				return
			}
			if err != nil {
				t.Fatalf("%+v: no detector of the profile's own features: %v", cfg, err)
			}
			if got := len(d.Columns()); got != len(fps) {
				t.Fatalf("%d columns for %d features and outputs", got, len(fps))
			}
			for i, row := range rows {
				ev, err := d.Add(time.Unix(int64(i), 0), row[:len(names)], row[len(names)], int64(i))
				if err != nil {
					t.Fatalf("%+v: row %v: %v", cfg, row, err)
				}
				if cfg.Window.Count != 1 {
					if ev != nil {
						t.Fatalf("an evaluation after %d predictions of a default window", i+1)
					}
					continue
				}
				if ev == nil || ev.Predictions != 1 || len(ev.Scores) != len(fps) {
					t.Fatalf("row %v: evaluation %+v, want one of a prediction with %d scores", row, ev, len(fps))
				}
				for _, s := range ev.Scores {
					if !(s.PSI >= 0 && s.PSI <= MaxPSI+1e-12 && s.JS >= 0 && s.JS <= 1+1e-12) {
						t.Fatalf("row %v: %s scores PSI %g, JS %g", row, s.Feature, s.PSI, s.JS)
					}
				}
			}
		}
	})
}

// checkLoaded fails t unless fp is a profile LoadProfile may accept: its
// counts, without overflow, add up to its count.
func checkLoaded(t *testing.T, fp FeatureProfile) {
	t.Helper()
	if fp.Count < 0 || fp.Nulls < 0 || fp.Other < 0 {
		t.Fatalf("%s: count %d, nulls %d, other %d", fp.Name, fp.Count, fp.Nulls, fp.Other)
	}
	sum := big.NewInt(int64(fp.Other))
	for _, n := range fp.Counts {
		if n < 0 {
			t.Fatalf("%s: negative count in %v", fp.Name, fp.Counts)
		}
		sum.Add(sum, big.NewInt(int64(n)))
	}
	for _, c := range fp.Categories {
		if c.Count < 0 {
			t.Fatalf("%s: negative count of %q", fp.Name, c.Value)
		}
		sum.Add(sum, big.NewInt(int64(c.Count)))
	}
	if sum.Cmp(big.NewInt(int64(fp.Count))) != 0 {
		t.Fatalf("%s: bins hold %v values, count says %d", fp.Name, sum, fp.Count)
	}
	for i, e := range fp.Edges {
		if math.IsInf(e, 0) || math.IsNaN(e) || i > 0 && e <= fp.Edges[i-1] {
			t.Fatalf("%s: edges %v", fp.Name, fp.Edges)
		}
	}
}

// fuzzRows are rows of inputs for p's features, then an output: zeros,
// each feature's first edge or category (one that is not a number reads as
// 0), its last edge, past it, and nulls. Numbers beyond float32 are 0.
func fuzzRows(p *Profile) [][]float32 {
	fps := slices.Concat(p.Features, ptrValue(p.Output))
	if p.Output == nil {
		fps = append(fps, FeatureProfile{})
	}
	finite := func(x float64) float32 {
		if y := float64(float32(x)); math.IsInf(y, 0) || math.IsNaN(y) {
			return 0
		}
		return float32(x)
	}
	rows := make([][]float32, 5)
	for i := range rows {
		rows[i] = make([]float32, len(fps))
	}
	for c, fp := range fps {
		first, last := 0.0, 0.0
		switch {
		case len(fp.Edges) > 0:
			first, last = fp.Edges[0], fp.Edges[len(fp.Edges)-1]
		case len(fp.Categories) > 0:
			first, _ = strconv.ParseFloat(fp.Categories[0].Value, 32)
			last = first
		}
		rows[1][c], rows[2][c], rows[3][c] = finite(first), finite(last), finite(last*2+1)
		rows[4][c] = float32(math.NaN())
	}
	return rows
}
