package features

import (
	"math"
	"math/big"
	"slices"
)

// xsum is an exact sum of float64s: non-overlapping partials (Shewchuk's
// algorithm, as in Python's math.fsum) whose exact total is the exact sum of
// every value added. Its value is that sum correctly rounded, so it does not
// depend on the order values arrive in or on how tiles group them: ingest,
// replays and backfills agree to the bit. Values must be finite.
type xsum []float64

func (s *xsum) add(x float64) {
	s.addNoCompact(x)
	if len(*s) > compactAt {
		s.compact()
	}
}

func (s *xsum) addNoCompact(x float64) {
	p := *s
	i := 0
	for _, y := range p {
		if math.Abs(x) < math.Abs(y) {
			x, y = y, x
		}
		hi := x + y
		lo := y - (hi - x)
		if lo != 0 {
			p[i] = lo
			i++
		}
		x = hi
	}
	*s = append(p[:i], x)
}

// compactAt is the length past which partials are rewritten as few as the
// exact value needs. Shewchuk's partials never overlap but may be more than
// needed, and a total that tiles are added to and taken from keeps growing.
const compactAt = 4

// compact rewrites s in its canonical form: the exact sum rounded, then the
// exact remainder rounded, and so on, smallest first. The exact sum is
// unchanged, and every way of adding up the same values has the same
// canonical form.
func (s *xsum) compact() {
	var buf [maxPartials]float64
	*s = append((*s)[:0], s.canonical(buf[:0])...)
}

// canonical appends s's canonical form to dst.
func (s xsum) canonical(dst []float64) []float64 {
	if len(s) <= 1 {
		return append(dst, s...) // one partial is its own rounded sum
	}
	var buf [maxPartials]float64
	rest := append(xsum(buf[:0]), s...)
	start := len(dst)
	for len(dst)-start < maxPartials {
		v := rest.value()
		if v == 0 {
			break
		}
		dst = append(dst, v)
		rest.addNoCompact(-v)
	}
	slices.Reverse(dst[start:])
	return dst
}

func (s *xsum) merge(o xsum) {
	for _, x := range o {
		s.add(x)
	}
}

// unmerge subtracts o, exactly.
func (s *xsum) unmerge(o xsum) {
	for _, x := range o {
		s.add(-x)
	}
}

// value returns the exact sum rounded to nearest, ties to even.
func (s xsum) value() float64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	n--
	hi, lo := s[n], 0.0
	for n > 0 {
		x, y := hi, s[n-1]
		n--
		hi = x + y
		lo = y - (hi - x)
		if lo != 0 {
			break
		}
	}
	// Round half to even across partials.
	if n > 0 && ((lo < 0 && s[n-1] < 0) || (lo > 0 && s[n-1] > 0)) {
		y := lo * 2
		x := hi + y
		if y == x-hi {
			hi = x
		}
	}
	return hi
}

// bigPrec is enough bits to hold any exact sum of float64s, or the exact
// square of one, without rounding.
const bigPrec = 4400

func (s xsum) big() *big.Float {
	z := new(big.Float).SetPrec(bigPrec)
	for _, x := range s {
		z.Add(z, big.NewFloat(x))
	}
	return z
}

// addSquare adds x*x exactly: the rounded product and its rounding error.
func (s *xsum) addSquare(x float64) {
	hi := x * x
	s.add(hi)
	if lo := math.FMA(x, x, -hi); lo != 0 {
		s.add(lo)
	}
}

// addProduct adds a*b exactly: the rounded product and its rounding error.
func (s *xsum) addProduct(a, b float64) {
	hi := a * b
	s.add(hi)
	if lo := math.FMA(a, b, -hi); lo != 0 {
		s.add(lo)
	}
}

// sign returns the sign of the exact sum: -1, 0 or 1.
func (s xsum) sign() int {
	switch v := s.value(); {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// stddev is the population standard deviation of n values with exact sum s1
// and exact sum of squares s2: the square root of the correctly rounded
// variance (n·s2 − s1²)/n².
func stddev(n int64, s1, s2 xsum) float64 {
	return math.Sqrt(variance(n, s1, s2))
}

// variance computes (n·s2 − s1²)/n² correctly rounded. The numerator is
// formed exactly from error-free products; a first quotient is then moved to
// the float64 nearest the exact one by comparing the numerator with n² times
// the midpoints between neighbouring floats, also exactly. Counts too large
// for n² to be exact, and results too close to the subnormal range for
// midpoints to be exact, take the slower arbitrary-precision path.
func variance(n int64, s1, s2 xsum) float64 {
	if n > 1<<26 {
		return varianceBig(n, s1, s2)
	}
	fn := float64(n)
	var num xsum
	for _, q := range s2 {
		num.addProduct(fn, q)
	}
	for _, a := range s1 {
		for _, b := range s1 {
			num.addProduct(-a, b)
		}
	}
	v := num.value() // zero only if the exact numerator is: all values equal
	if v <= 0 {
		return 0
	}
	d := fn * fn
	q := v / d
	if !(q >= 0x1p-900 && q <= 0x1p900) { // NaN, from a corrupt state, too
		return varianceBig(n, s1, s2)
	}
	// The first quotient is within two units in the last place; a few steps
	// are always enough, and the bound keeps any surprise finite.
	for range 4 { // while the exact quotient lies above the midpoint to the next float
		up := math.Nextafter(q, math.Inf(1))
		c := midpointCmp(num, q, up, d)
		if c < 0 {
			break
		}
		if c == 0 {
			return even(q, up)
		}
		q = up
	}
	for range 4 { // while it lies below the midpoint to the previous float
		down := math.Nextafter(q, 0)
		c := midpointCmp(num, down, q, d)
		if c > 0 {
			break
		}
		if c == 0 {
			return even(down, q)
		}
		q = down
	}
	if midpointCmp(num, q, math.Nextafter(q, math.Inf(1)), d) > 0 || midpointCmp(num, math.Nextafter(q, 0), q, d) < 0 {
		return varianceBig(n, s1, s2)
	}
	return q
}

// midpointCmp compares num/d with (a+b)/2 exactly: the sign of 2·num − d·a − d·b.
func midpointCmp(num xsum, a, b, d float64) int {
	var t xsum
	for _, p := range num {
		t.add(2 * p)
	}
	t.addProduct(-d, a)
	t.addProduct(-d, b)
	return t.sign()
}

// even returns whichever of two neighbouring floats has an even significand.
func even(a, b float64) float64 {
	if math.Float64bits(a)&1 == 0 {
		return a
	}
	return b
}

func varianceBig(n int64, s1, s2 xsum) float64 {
	num := new(big.Float).SetPrec(bigPrec).SetInt64(n)
	num.Mul(num, s2.big())
	sq := s1.big()
	num.Sub(num, sq.Mul(sq, sq))
	if num.Sign() <= 0 {
		return 0
	}
	r, _ := num.Rat(nil)
	r.Quo(r, new(big.Rat).SetFrac64(n*n, 1))
	v, _ := r.Float64() // nearest float64, subnormals included
	return v
}
