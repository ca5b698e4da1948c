package features

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestVarianceFastMatchesBig checks the integer and the float-only variance
// against the arbitrary-precision one on values of mixed scales, where the
// numerator cancels heavily and roundings are close to ties, and on counts
// up to the largest the fast ones take.
func TestVarianceFastMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := 200_000
	if testing.Short() {
		cases = 20_000
	}
	fixedCases := 0
	for c := range cases {
		var s1, s2 xsum
		n := int64(1 + rng.IntN(30))
		scale := math.Pow(10, float64(rng.IntN(30)-15))
		base := rng.NormFloat64() * scale * float64(rng.IntN(1000))
		ties := rng.IntN(4) == 0 // integers whose variance has 54 bits or so: ties and near-ties
		if ties {
			n = int64(2 + rng.IntN(8))
		}
		for range n {
			x := base + rng.NormFloat64()*scale
			switch {
			case ties:
				x = math.Ldexp(float64(rng.Int64N(1<<28)), rng.IntN(20)-10)
			case rng.IntN(4) == 0:
				x = math.Round(x)
			}
			var x1, sq term
			x1.set(x)
			sq.setSquare(x)
			s1.addTerm(&x1)
			s2.addTerm(&sq)
		}
		if rng.IntN(8) == 0 { // a larger count: n·s2 − s1² stays positive
			n += rng.Int64N(1<<26 - n + 1)
		}
		want := varianceBig(n, &s1, &s2)
		if got := variancePartials(n, &s1, &s2); got != want {
			t.Fatalf("case %d: from partials %v, exact %v", c, got, want)
		}
		if s1.wide == nil && s2.wide == nil {
			fixedCases++
			if got, ok := varianceFixed(n, &s1.fix, &s2.fix); !ok || got != want {
				t.Fatalf("case %d: in integers %v (%v), exact %v", c, got, ok, want)
			}
		}
	}
	if fixedCases == 0 || fixedCases == cases {
		t.Fatalf("%d of %d cases in fixed sums: want some of each", fixedCases, cases)
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

// TestVarianceHugeCount: a count whose square overflows an int64 (past
// ~3·10⁹ values; a multiple of 2³² wraps it to zero) still gives the
// variance.
func TestVarianceHugeCount(t *testing.T) {
	var s1, s2 xsum
	for _, x := range []float64{1, 3} {
		var x1, sq term
		x1.set(x)
		sq.setSquare(x)
		s1.addTerm(&x1)
		s2.addTerm(&sq)
	}
	for _, n := range []int64{3_500_000_000, 1 << 32, 1 << 40} {
		nf := float64(n)
		want := (nf*10 - 16) / (nf * nf) // n·s2 − s1², over n²
		if got := variance(n, &s1, &s2); math.Abs(got-want) > 1e-15*want {
			t.Errorf("n=%d: variance %v, want %v", n, got, want)
		}
	}
}
