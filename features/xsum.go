package features

import (
	"math"
	"math/big"
	"slices"
)

// xsum is an exact sum of float64s. Its value is that sum correctly
// rounded, so it does not depend on the order values arrive in or on how
// tiles group them: ingest, replays and backfills agree to the bit. Values
// must be finite.
//
// Most sums are of numbers, and squares of numbers, whose bits lie within a
// fixed range (fixed): such a sum is one 256-bit integer, and adding to it is
// a few integer additions, held in the tile itself. The first number outside
// that range turns the sum, for good, into Shewchuk's non-overlapping
// partials (as in Python's math.fsum), slower but exact over every float64.
type xsum struct {
	fix  fixed      // the sum, while wide is nil
	wide *[]float64 // else its partials, smallest first
}

// parts returns the partials of s, smallest first: canonical (see compact)
// unless s is wide. They may be s's own, not to be modified.
func (s *xsum) parts(buf *[maxPartials]float64) []float64 {
	if s.wide != nil {
		return *s.wide
	}
	return s.fix.partials(buf[:0])
}

func (s *xsum) reset() { *s = xsum{} }

// clone returns a copy that shares no memory with s.
func (s *xsum) clone() xsum {
	c := *s
	if c.wide != nil {
		w := slices.Clone(*c.wide)
		c.wide = &w
	}
	return c
}

func (s *xsum) add(x float64) {
	if s.wide == nil && s.fix.add(x) {
		return
	}
	s.widen()
	*s.wide = addPartial(*s.wide, x)
	if len(*s.wide) > compactAt {
		s.compact()
	}
}

// widen turns s into partials.
func (s *xsum) widen() {
	if s.wide == nil {
		p := s.fix.partials(make([]float64, 0, 2*compactAt))
		s.fix, s.wide = fixed{}, &p
	}
}

// setCanonical sets s to the exact sum of the canonical partials p.
func (s *xsum) setCanonical(p []float64) {
	*s = xsum{}
	for _, x := range p {
		if !s.fix.add(x) {
			w := slices.Clone(p)
			*s = xsum{wide: &w}
			return
		}
	}
}

// addPartial adds x to the partials p, reusing p's array. Being a function
// of slices rather than a method on a pointer lets callers keep p on the
// stack.
func addPartial(p []float64, x float64) []float64 {
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
	return append(p[:i], x)
}

// compactAt is the length past which partials are rewritten as few as the
// exact value needs. Shewchuk's partials never overlap but may be more than
// needed, and a total that tiles are added to and taken from keeps growing.
const compactAt = 4

// compact rewrites a wide s in its canonical form: the exact sum rounded,
// then the exact remainder rounded, and so on, smallest first. The exact sum
// is unchanged, and every way of adding up the same values has the same
// canonical form, the one fixed.partials gives.
func (s *xsum) compact() {
	if s.wide == nil {
		return
	}
	var buf [maxPartials]float64
	*s.wide = append((*s.wide)[:0], canonical(*s.wide, buf[:0])...)
}

// isCanonical reports whether partials are in canonical form: each is the
// rounded sum of itself and those below it. Canonical partials are also
// sorted and non-overlapping, as the exact-sum code requires.
func isCanonical(p []float64) bool {
	for k := len(p) - 1; k >= 0; k-- {
		if p[k] == 0 || sumPartials(p[:k+1]) != p[k] {
			return false
		}
	}
	return true
}

// canonical appends the canonical form of partials p to dst.
func canonical(p []float64, dst []float64) []float64 {
	if isCanonical(p) {
		return append(dst, p...)
	}
	var buf [maxPartials]float64
	rest := append(buf[:0], p...)
	start := len(dst)
	for len(dst)-start < maxPartials {
		v := sumPartials(rest)
		if v == 0 {
			break
		}
		dst = append(dst, v)
		rest = addPartial(rest, -v)
	}
	slices.Reverse(dst[start:])
	return dst
}

func (s *xsum) merge(o *xsum) {
	if s.wide == nil && o.wide == nil && s.fix.addFixed(&o.fix) {
		return
	}
	var buf [maxPartials]float64
	for _, x := range o.parts(&buf) {
		s.add(x)
	}
}

// unmerge subtracts o, exactly.
func (s *xsum) unmerge(o *xsum) {
	if s.wide == nil && o.wide == nil && s.fix.subFixed(&o.fix) {
		return
	}
	var buf [maxPartials]float64
	for _, x := range o.parts(&buf) {
		s.add(-x)
	}
}

func (s *xsum) value() float64 {
	if s.wide == nil {
		return s.fix.float()
	}
	return sumPartials(*s.wide)
}

// sumPartials returns the exact sum of partials rounded to nearest, ties to
// even.
func sumPartials(s []float64) float64 {
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

func (s *xsum) big() *big.Float {
	z := new(big.Float).SetPrec(bigPrec)
	var buf [maxPartials]float64
	for _, x := range s.parts(&buf) {
		z.Add(z, big.NewFloat(x))
	}
	return z
}

// term is a number to add to exact sums, converted to units once: a tile
// and its series' total add the same term.
type term struct {
	hi, lo float64 // the number; or a square's rounded value and its rounding error
	fix    addend  // hi + lo in units, if ok
	ok     bool
}

func (t *term) set(x float64) {
	t.hi, t.lo = x, 0
	t.ok = t.fix.set(x)
}

// setSquare sets t to x*x, exactly.
func (t *term) setSquare(x float64) {
	t.hi = x * x
	t.lo = math.FMA(x, x, -t.hi)
	t.ok = t.fix.setSquare(x)
}

// addTerm adds t: in units while the sum is fixed and t fits, else as its
// parts (one of which may still fit).
func (s *xsum) addTerm(t *term) {
	if s.wide == nil && t.ok && s.fix.addAddend(&t.fix) {
		return
	}
	s.add(t.hi)
	if t.lo != 0 {
		s.add(t.lo)
	}
}

// addProduct adds a*b exactly to partials p: the rounded product and its
// rounding error.
func addProduct(p []float64, a, b float64) []float64 {
	hi := a * b
	p = addPartial(p, hi)
	if lo := math.FMA(a, b, -hi); lo != 0 {
		p = addPartial(p, lo)
	}
	return p
}

// sign returns the sign of the exact sum of partials: -1, 0 or 1.
func sign(p []float64) int {
	switch v := sumPartials(p); {
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
func stddev(n int64, s1, s2 *xsum) float64 {
	return math.Sqrt(variance(n, s1, s2))
}

// variance computes (n·s2 − s1²)/n² correctly rounded. The numerator is
// formed exactly from error-free products; a first quotient is then moved to
// the float64 nearest the exact one by comparing the numerator with n² times
// the midpoints between neighbouring floats, also exactly. Counts too large
// for n² to be exact, and results too close to the subnormal range for
// midpoints to be exact, take the slower arbitrary-precision path.
func variance(n int64, s1, s2 *xsum) float64 {
	if n > 1<<26 {
		return varianceBig(n, s1, s2)
	}
	if n > 0 && s1.wide == nil && s2.wide == nil && int64(s2.fix[fixLimbs-1]) >= 0 {
		if v, ok := varianceFixed(n, &s1.fix, &s2.fix); ok {
			return v
		}
	}
	return variancePartials(n, s1, s2)
}

// variancePartials is variance from partials, for sums that are not both
// fixed.
func variancePartials(n int64, s1, s2 *xsum) float64 {
	fn := float64(n)
	var buf, b1, b2 [maxPartials]float64
	num := buf[:0]
	for _, q := range s2.parts(&b2) {
		num = addProduct(num, fn, q)
	}
	p1 := s1.parts(&b1)
	for _, a := range p1 {
		for _, b := range p1 {
			num = addProduct(num, -a, b)
		}
	}
	v := sumPartials(num) // zero only if the exact numerator is: all values equal
	if v <= 0 {
		return 0
	}
	d := fn * fn
	q := v / d
	if !(q >= 0x1p-900 && q <= 0x1p900) { // NaN, from a corrupt state, too
		return varianceBig(n, s1, s2)
	}
	// The first quotient is within two units in the last place: a step or
	// two settles it. The bound keeps any surprise finite.
	settled := false
	for range 4 { // while the exact quotient lies above the midpoint to the next float
		up := math.Nextafter(q, math.Inf(1))
		c := midpointCmp(num, q, up, d)
		if c == 0 {
			return even(q, up)
		}
		if settled = c < 0; settled {
			break
		}
		q = up
	}
	if !settled {
		return varianceBig(n, s1, s2)
	}
	settled = false
	for range 4 { // while it lies below the midpoint to the previous float
		down := math.Nextafter(q, 0)
		c := midpointCmp(num, down, q, d)
		if c == 0 {
			return even(down, q)
		}
		if settled = c > 0; settled {
			break
		}
		q = down
	}
	if !settled {
		return varianceBig(n, s1, s2)
	}
	return q
}

// midpointCmp compares num/d with (a+b)/2 exactly: the sign of 2·num − d·a − d·b.
func midpointCmp(num []float64, a, b, d float64) int {
	var buf [maxPartials]float64
	t := buf[:0]
	for _, p := range num {
		t = addPartial(t, 2*p)
	}
	t = addProduct(t, -d, a)
	t = addProduct(t, -d, b)
	return sign(t)
}

// even returns whichever of two neighbouring floats has an even significand.
func even(a, b float64) float64 {
	if math.Float64bits(a)&1 == 0 {
		return a
	}
	return b
}

func varianceBig(n int64, s1, s2 *xsum) float64 {
	num := new(big.Float).SetPrec(bigPrec).SetInt64(n)
	num.Mul(num, s2.big())
	sq := s1.big()
	num.Sub(num, sq.Mul(sq, sq))
	if num.Sign() <= 0 {
		return 0
	}
	r, _ := num.Rat(nil)
	n2 := big.NewInt(n) // n² overflows an int64 from ~3·10⁹ values
	r.Quo(r, new(big.Rat).SetInt(n2.Mul(n2, n2)))
	v, _ := r.Float64() // nearest float64, subnormals included
	return v
}
