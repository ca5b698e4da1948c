package features

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestVarianceFastMatchesBig checks the float-only variance against the
// arbitrary-precision one on values of mixed scales, where the numerator
// cancels heavily and roundings are close to ties.
func TestVarianceFastMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := 200_000
	if testing.Short() {
		cases = 20_000
	}
	for c := range cases {
		var s1, s2 xsum
		n := 1 + rng.IntN(30)
		scale := math.Pow(10, float64(rng.IntN(30)-15))
		base := rng.NormFloat64() * scale * float64(rng.IntN(1000))
		for range n {
			x := base + rng.NormFloat64()*scale
			if rng.IntN(4) == 0 {
				x = math.Round(x)
			}
			var x1, sq term
			x1.set(x)
			sq.setSquare(x)
			s1.addTerm(&x1)
			s2.addTerm(&sq)
		}
		if a, b := variance(int64(n), &s1, &s2), varianceBig(int64(n), &s1, &s2); a != b {
			t.Fatalf("case %d: fast %v, exact %v", c, a, b)
		}
	}
}

// TestCompactIsCanonical adds the same values in different orders: the
// partials differ, their canonical forms do not.
func TestCompactIsCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for c := range 2_000 {
		vals := make([]float64, 1+rng.IntN(50))
		for i := range vals {
			vals[i] = rng.NormFloat64() * math.Pow(2, float64(rng.IntN(200)-100))
		}
		var a []float64
		var b xsum
		for _, v := range vals {
			a = addPartial(a, v)
		}
		for i := len(vals) - 1; i >= 0; i-- {
			b.add(vals[i])
		}
		var buf [maxPartials]float64
		ca, cb := canonical(a, nil), canonical(b.parts(&buf), nil)
		if len(ca) != len(cb) {
			t.Fatalf("case %d: canonical forms %v and %v", c, ca, cb)
		}
		for i := range ca {
			if ca[i] != cb[i] {
				t.Fatalf("case %d: canonical forms %v and %v", c, ca, cb)
			}
		}
		if sumPartials(a) != b.value() {
			t.Fatalf("case %d: sums %v and %v", c, sumPartials(a), b.value())
		}
	}
}
