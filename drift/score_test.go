package drift

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// Scores computed by hand.
func TestScoresByHand(t *testing.T) {
	for _, tc := range []struct {
		name             string
		actual, expected []float64
		psi, js          float64
	}{
		// a = (½, ½), e = (¼, ¾): PSI = ¼·ln 2 + ¼·ln(3/2) = ln(3)/4;
		// m = (3/8, 5/8), JSD = ½[½·log₂(4/3) + ½·log₂(4/5) + ¼·log₂(2/3) + ¾·log₂(6/5)].
		{"shift", []float64{50, 50}, []float64{25, 75}, math.Log(3) / 4, 0.22089576884901735},
		// Counts, not shares: scale does not matter.
		{"scaled", []float64{1, 1}, []float64{1000, 3000}, math.Log(3) / 4, 0.22089576884901735},
		// a = (0, 1), e = (½, ½). An empty bin counts as Epsilon in PSI:
		// (ε − ½)·ln(2ε) + ½·ln 2 = 4.60431846666895. m = (¼, ¾):
		// JSD = ½[log₂(4/3) + ½·log₂(2) + ½·log₂(2/3)].
		{"empty bin", []float64{0, 10}, []float64{5, 5}, 4.60431846666895, math.Sqrt(0.5 * (math.Log2(4.0/3) + 0.5 + 0.5*math.Log2(2.0/3)))},
		{"identical", []float64{3, 0, 7}, []float64{3, 0, 7}, 0, 0},
		{"disjoint", []float64{4, 0}, []float64{0, 9}, MaxPSI, 1},
		{"no actual counts", []float64{0, 0}, []float64{1, 2}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PSI(tc.actual, tc.expected); math.Abs(got-tc.psi) > 1e-12*max(1, tc.psi) {
				t.Errorf("PSI = %.15g, want %.15g", got, tc.psi)
			}
			if got := JS(tc.actual, tc.expected); math.Abs(got-tc.js) > 1e-12 {
				t.Errorf("JS = %.15g, want %.15g", got, tc.js)
			}
		})
	}
}

// Properties over random distributions: scores are 0 for identical ones,
// small for samples of the same one, largest for disjoint ones, JS is a
// symmetric distance within [0, 1] and PSI never passes MaxPSI.
func TestScoreProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := 500
	if testing.Short() {
		cases = 50
	}
	for range cases {
		k := 2 + r.IntN(20)
		p, q := make([]float64, k), make([]float64, k)
		for i := range k {
			p[i], q[i] = float64(r.IntN(1000)), float64(r.IntN(1000))
		}
		p[r.IntN(k)]++ // never all zero
		q[r.IntN(k)]++
		if s := PSI(p, p); s != 0 {
			t.Fatalf("PSI(p, p) = %g for %v", s, p)
		}
		if s := JS(p, p); s > 1e-7 {
			t.Fatalf("JS(p, p) = %g for %v", s, p)
		}
		psi, js := PSI(p, q), JS(p, q)
		if psi < 0 || psi > MaxPSI+1e-12 || js < 0 || js > 1+1e-12 {
			t.Fatalf("PSI %g, JS %g out of range for %v, %v", psi, js, p, q)
		}
		if d := math.Abs(js - JS(q, p)); d > 1e-12 {
			t.Fatalf("JS not symmetric: %g vs %g", js, JS(q, p))
		}

		// 20,000 draws from p against p: no drift.
		sample := make([]float64, k)
		cum := make([]float64, k)
		total := 0.0
		for i, x := range p {
			total += x
			cum[i] = total
		}
		for range 20_000 {
			u := r.Float64() * total
			i := 0
			for cum[i] <= u {
				i++
			}
			sample[i]++
		}
		if s := PSI(sample, p); s > 0.05 {
			t.Fatalf("PSI of a sample of p against p = %g, want near 0 (%v vs %v)", s, sample, p)
		}
		if s := JS(sample, p); s > 0.05 {
			t.Fatalf("JS of a sample of p against p = %g, want near 0", s)
		}

		// Disjoint supports: JS is 1; point masses give MaxPSI.
		a, b := make([]float64, k), make([]float64, k)
		split := 1 + r.IntN(k-1)
		for i := range k {
			if i < split {
				a[i] = 1 + float64(r.IntN(10))
			} else {
				b[i] = 1 + float64(r.IntN(10))
			}
		}
		if s := JS(a, b); math.Abs(s-1) > 1e-12 {
			t.Fatalf("JS of disjoint %v, %v = %g, want 1", a, b, s)
		}
		clear(a)
		clear(b)
		a[0], b[k-1] = float64(1+r.IntN(100)), float64(1+r.IntN(100))
		if s := PSI(a, b); math.Abs(s-MaxPSI) > 1e-12 {
			t.Fatalf("PSI of point masses = %g, want MaxPSI %g", s, MaxPSI)
		}
	}
}

func TestNumberJSON(t *testing.T) {
	in := []Number{1.5, Number(math.NaN()), -2e-7, 3e9, Number(math.Inf(1)), 0}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[1.5,null,-2e-07,3e+09,null,0]`; string(b) != want {
		t.Errorf("marshalled %s, want %s", b, want)
	}
	var out []Number
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	for i, x := range out {
		if w := in[i]; !(x == w || x != x && (w != w || math.IsInf(float64(w), 0))) {
			t.Errorf("%d: %v, want %v", i, x, w)
		}
	}
	if err := json.Unmarshal([]byte(`["1"]`), &out); err == nil {
		t.Error("a string as a number: no error")
	}
}
