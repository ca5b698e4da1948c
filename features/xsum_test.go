package features

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactOf returns the exact sum of xs.
func exactOf(xs []float64) *big.Float {
	s := new(big.Float).SetPrec(bigPrec)
	for _, x := range xs {
		s.Add(s, big.NewFloat(x))
	}
	return s
}

// xsumValues draws numbers of the kinds sums see: amounts with two decimals,
// integers, squares' rounding errors, and now and then one far outside the
// fixed range (tiny, huge), or right at its edges.
func xsumValues(rng *rand.Rand, n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		var x float64
		switch rng.IntN(8) {
		case 0:
			x = float64(rng.IntN(1_000_000)) / 100
		case 1:
			x = float64(rng.Int64N(1 << 40))
		case 2:
			a := rng.Float64() * 1e4
			x = math.FMA(a, a, -a*a) // the error of a square: tiny bits
		case 3:
			x = rng.NormFloat64() * math.Pow(2, float64(rng.IntN(400)-200))
		case 4:
			x = math.Ldexp(float64(1+rng.IntN(1<<20)), -fixFrac+rng.IntN(3)-1) // at the unit
		case 5:
			x = math.Ldexp(1-rng.Float64()/1e6, fixTop-fixFrac-rng.IntN(3)) // at the top
		default:
			x = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-3))
		}
		if rng.IntN(2) == 0 {
			x = -x
		}
		xs[i] = x
	}
	return xs
}

// TestXsumIsExact adds random numbers in random orders, one by one and by
// merging and unmerging sums, through both the fixed and the partials
// representation: the value is always the exact sum rounded once, and the
// canonical partials are always the same.
func TestXsumIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := 20_000
	if testing.Short() {
		cases = 2_000
	}
	for c := range cases {
		xs := xsumValues(rng, 1+rng.IntN(40))
		if c%2 == 0 { // half the cases stay within the fixed range
			xs = slices.DeleteFunc(xs, func(x float64) bool { var f fixed; return !f.add(x) })
		}
		want := exactOf(xs)
		wantV, _ := want.Float64()

		var a xsum
		for _, x := range xs {
			a.add(x)
		}
		// The same numbers in another order, half of them merged in, and a
		// few extra ones added, merged in and taken out again.
		perm := rng.Perm(len(xs))
		var b, half, extra xsum
		for k, i := range perm {
			if k%2 == 0 {
				half.add(xs[i])
			} else {
				b.add(xs[i])
			}
		}
		for _, x := range xsumValues(rng, rng.IntN(4)) {
			extra.add(x)
		}
		b.merge(&extra)
		b.merge(&half)
		b.unmerge(&extra)

		var bufA, bufB [maxPartials]float64
		pa, pb := canonical(a.parts(&bufA), nil), canonical(b.parts(&bufB), nil)
		for name, s := range map[string]*xsum{"added": &a, "merged": &b} {
			if got := s.value(); got != wantV {
				t.Fatalf("case %d: %s sum of %v is %v, want %v", c, name, xs, got, wantV)
			}
			if s.big().Cmp(want) != 0 {
				t.Fatalf("case %d: %s partials do not add up to the exact sum of %v", c, name, xs)
			}
		}
		if !slices.Equal(pa, pb) || !isCanonical(pa) {
			t.Fatalf("case %d: canonical forms %v and %v", c, pa, pb)
		}
		var d xsum
		d.setCanonical(pa)
		if d.big().Cmp(want) != 0 {
			t.Fatalf("case %d: setCanonical(%v) lost the sum", c, pa)
		}
	}
}

// TestFixedRounding checks the fixed sum's rounding at ties and near them,
// in both signs, against big.Float.
func TestFixedRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for c := range 50_000 {
		// An odd or even 53-bit significand, then half a unit of its last
		// place, or a little less or more.
		m := float64(1<<52 + rng.Int64N(1<<52))
		e := rng.IntN(fixTop-fixFrac-52+fixFrac-40) - fixFrac + 40 // every bit within range
		xs := []float64{math.Ldexp(m, e)}
		switch rng.IntN(3) {
		case 0:
			xs = append(xs, math.Ldexp(1, e-1))
		case 1:
			xs = append(xs, math.Ldexp(1, e-1), math.Ldexp(1, e-40))
		case 2:
			xs = append(xs, math.Ldexp(1, e-1), -math.Ldexp(1, e-40))
		}
		if rng.IntN(2) == 0 {
			for i := range xs {
				xs[i] = -xs[i]
			}
		}
		var f fixed
		fits := true
		for _, x := range xs {
			fits = fits && f.add(x)
		}
		if !fits {
			t.Fatalf("case %d: %v does not fit the fixed range", c, xs)
		}
		want, _ := exactOf(xs).Float64()
		if got := f.float(); got != want {
			t.Fatalf("case %d: %v rounds to %v, want %v", c, xs, got, want)
		}
	}
}

// TestFixedRange checks what the fixed sum refuses, and that a refusal
// changes nothing.
func TestFixedRange(t *testing.T) {
	for _, tc := range []struct {
		x  float64
		ok bool
	}{
		{0, true},
		{math.Ldexp(1, -fixFrac), true},
		{math.Ldexp(3, -fixFrac-1), false}, // a bit below the unit
		{math.Ldexp(1, -fixFrac-1), false},
		{math.SmallestNonzeroFloat64, false},
		{math.Ldexp(1, fixTop-fixFrac) * (1 - 0x1p-53), true},
		{math.Ldexp(1, fixTop-fixFrac+1), false},
		{math.MaxFloat64, false},
		{math.Inf(1), false},
		{math.NaN(), false},
	} {
		for _, x := range []float64{tc.x, -tc.x} {
			var f fixed
			if got := f.add(x); got != tc.ok {
				t.Errorf("add(%v) = %v, want %v", x, got, tc.ok)
			}
			if !tc.ok && !f.isZero() {
				t.Errorf("add(%v) failed but changed the sum", x)
			}
		}
	}
	// Sums that would leave the range fail and leave it as it was.
	var f fixed
	big := math.Ldexp(1, fixTop-fixFrac-1)
	if !f.add(big) || f.add(big) || f.float() != big {
		t.Errorf("adding %v twice: sum %v, want the second refused", big, f.float())
	}
	var s xsum
	s.add(big)
	s.add(big)
	if s.wide == nil || s.value() != 2*big {
		t.Errorf("xsum of %v twice: %v (wide %v)", big, s.value(), s.wide != nil)
	}
}

// TestSquareTerm checks that a square converted to units at once is the
// exact square: the same sum as its rounded value and its rounding error
// added one after the other, whatever the sum held before, at the unit and
// the top of the fixed range too.
func TestSquareTerm(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	xs := append(xsumValues(rng, 50_000), 0, 1, -1, 0.5, 100, 1e-8, math.SmallestNonzeroFloat64,
		math.Ldexp(1, -fixFrac/2), math.Ldexp(3, -fixFrac/2-1), math.Ldexp(1, -fixFrac/2-40),
		math.Ldexp(1, (fixTop-fixFrac)/2), math.Ldexp(1, (fixTop-fixFrac)/2+1), maxMagnitude)
	fits := 0
	for i, x := range xs {
		var a, b xsum
		for _, p := range xsumValues(rng, rng.IntN(3)) {
			a.add(p)
			b.add(p)
		}
		var sq term
		sq.setSquare(x)
		a.addTerm(&sq)
		hi := x * x
		b.add(hi)
		if lo := math.FMA(x, x, -hi); lo != 0 {
			b.add(lo)
		}
		var pa, pb [maxPartials]float64
		if ca, cb := canonical(a.parts(&pa), nil), canonical(b.parts(&pb), nil); !slices.Equal(ca, cb) {
			t.Fatalf("case %d: %v squared: sum %v, want %v", i, x, ca, cb)
		}
		if sq.ok {
			fits++
		}
	}
	if fits == 0 || fits == len(xs) {
		t.Fatalf("%d of %d squares fit the fixed range: want some of each", fits, len(xs))
	}
}
