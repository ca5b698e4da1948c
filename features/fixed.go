package features

import (
	"math"
	"math/bits"
	"slices"
)

// fixed is an exact sum held as a two's complement integer of fixLimbs
// 64-bit limbs, least significant first, in units of 2^-fixFrac. It holds
// any multiple of that unit below 2^fixTop in magnitude (about 1e31): the
// sums and sums of squares of numbers with a few dozen significant decimal
// digits, whatever the order they come in. Adding a number outside it fails
// and leaves the sum unchanged.
type fixed [fixLimbs]uint64

const (
	fixLimbs = 4
	fixFrac  = 150 // bits below the binary point: squares of 1e-6 are exact
	// fixTop bounds a sum's magnitude, 2^fixTop units: the top three bits
	// are sign bits, so that adding two numbers in range cannot wrap and
	// rounding one up stays in range.
	fixTop = 64*fixLimbs - 3
)

// add adds x and reports whether it could: x must be a multiple of
// 2^-fixFrac (no set bit below it) and the sum must stay in range.
func (f *fixed) add(x float64) bool {
	var a addend
	return a.set(x) && f.addAddend(&a)
}

// addend is a number in units, converted once to be added to several sums:
// a tile's and its series' total.
type addend struct {
	mag fixed // its magnitude
	neg bool
}

// set sets a to x in units and reports whether it could: x must be a
// multiple of 2^-fixFrac below 2^(fixTop+1) units in magnitude, so that
// adding it to a sum in range cannot wrap.
func (a *addend) set(x float64) bool {
	*a = addend{}
	if x == 0 {
		return true
	}
	b := math.Float64bits(x)
	exp := int(b>>52) & 0x7ff
	if exp == 0 || exp == 0x7ff { // subnormal, far below the unit, or not finite
		return false
	}
	m := b&(1<<52-1) | 1<<52 // |x| = m·2^(exp-1075)
	sh := exp - 1075 + fixFrac
	if sh < 0 {
		if bits.TrailingZeros64(m) < -sh {
			return false
		}
		m, sh = m>>-sh, 0
	}
	if sh+53 > fixTop+1 {
		return false
	}
	a.mag.place(m, sh)
	a.neg = b>>63 != 0
	return true
}

// setSquare sets a to x·x, exactly, in units, under the conditions of set.
func (a *addend) setSquare(x float64) bool {
	*a = addend{}
	b := math.Float64bits(x)
	exp := int(b>>52) & 0x7ff
	if exp == 0 || exp == 0x7ff {
		return x == 0
	}
	m := b&(1<<52-1) | 1<<52
	hi, lo := bits.Mul64(m, m) // x·x = (hi·2^64 + lo)·2^(2·(exp-1075)), hi ≥ 2^40
	sh := 2*(exp-1075) + fixFrac
	if sh < 0 {
		tz := bits.TrailingZeros64(lo)
		if lo == 0 {
			tz = 64 + bits.TrailingZeros64(hi)
		}
		if tz < -sh {
			return false
		}
		if k := uint(-sh); k < 64 {
			hi, lo = hi>>k, lo>>k|hi<<(64-k)
		} else {
			hi, lo = 0, hi>>(k-64)
		}
		sh = 0
	}
	if sh+64+bits.Len64(hi) > fixTop+1 {
		return false
	}
	var w fixed
	a.mag.place(lo, sh)
	w.place(hi, sh+64)
	return a.mag.addFixed(&w) // the halves do not overlap: in range, as checked
}

// addAddend adds a, if the sum stays in range.
func (f *fixed) addAddend(a *addend) bool {
	if a.neg {
		return f.subFixed(&a.mag)
	}
	return f.addFixed(&a.mag)
}

// place sets the zero f to m·2^sh units; m·2^sh must be below
// 2^(64·fixLimbs).
func (f *fixed) place(m uint64, sh int) {
	i, o := sh/64, uint(sh%64)
	f[i] = m << o
	if o > 0 && i+1 < fixLimbs {
		f[i+1] = m >> (64 - o)
	}
}

// addFixed adds v, if the sum is in range.
func (f *fixed) addFixed(v *fixed) bool {
	var r fixed
	var c uint64
	r[0], c = bits.Add64(f[0], v[0], 0) // unrolled: fixLimbs is 4
	r[1], c = bits.Add64(f[1], v[1], c)
	r[2], c = bits.Add64(f[2], v[2], c)
	r[3], _ = bits.Add64(f[3], v[3], c)
	if !r.inRange() {
		return false
	}
	*f = r
	return true
}

// subFixed subtracts v, if the difference is in range.
func (f *fixed) subFixed(v *fixed) bool {
	var r fixed
	var c uint64
	r[0], c = bits.Sub64(f[0], v[0], 0)
	r[1], c = bits.Sub64(f[1], v[1], c)
	r[2], c = bits.Sub64(f[2], v[2], c)
	r[3], _ = bits.Sub64(f[3], v[3], c)
	if !r.inRange() {
		return false
	}
	*f = r
	return true
}

// inRange reports whether |f| < 2^fixTop: its top bits all equal the sign.
func (f *fixed) inRange() bool {
	t := f[fixLimbs-1] >> (fixTop - 64*(fixLimbs-1))
	return t == 0 || t == 1<<(64*fixLimbs-fixTop)-1
}

func (f *fixed) isZero() bool { return *f == fixed{} }

// float returns f rounded to the nearest float64, ties to even.
func (f *fixed) float() float64 {
	q, sh, neg := f.round()
	return toFloat(q, sh, neg)
}

// toFloat returns ±q·2^sh units; q < 2^54, so that it is exact.
func toFloat(q uint64, sh int, neg bool) float64 {
	v := float64(q) * math.Float64frombits(uint64(1023+sh-fixFrac)<<52) // a normal power of two: exact
	if neg {
		return -v
	}
	return v
}

// round returns |f| rounded to 53 significant bits, ties to even, as
// q·2^sh units (q ≤ 2^53; 0 if f is zero), and f's sign.
func (f *fixed) round() (q uint64, sh int, neg bool) {
	m := *f
	neg = int64(m[fixLimbs-1]) < 0
	if neg {
		m = fixed{}
		m.subFixed(f) // 0 - f: in range, as f is
	}
	top := fixLimbs - 1
	for top >= 0 && m[top] == 0 {
		top--
	}
	if top < 0 {
		return 0, 0, false
	}
	p := top*64 + 63 - bits.LeadingZeros64(m[top]) // the highest set bit
	if p < 53 {
		return m[0], 0, neg
	}
	sh = p - 52
	q = m.shr(sh)
	if m.bit(sh-1) && (q&1 == 1 || m.anyBelow(sh-1)) {
		q++
	}
	return q, sh, neg
}

// shr returns the low 64 bits of f >> k.
func (f *fixed) shr(k int) uint64 { return shrLimbs(f[:], k) }

// bit reports whether bit k of f is set.
func (f *fixed) bit(k int) bool { return bitLimbs(f[:], k) }

// anyBelow reports whether any bit of f below bit k is set.
func (f *fixed) anyBelow(k int) bool { return anyBelowLimbs(f[:], k) }

// shrLimbs returns the low 64 bits of x >> k, x's limbs least significant
// first.
func shrLimbs(x []uint64, k int) uint64 {
	i, o := k/64, uint(k%64)
	q := x[i] >> o
	if o > 0 && i+1 < len(x) {
		q |= x[i+1] << (64 - o)
	}
	return q
}

// bitLimbs reports whether bit k of x is set.
func bitLimbs(x []uint64, k int) bool { return x[k/64]>>(k%64)&1 == 1 }

// anyBelowLimbs reports whether any bit of x below bit k is set.
func anyBelowLimbs(x []uint64, k int) bool {
	i := k / 64
	for j := range i {
		if x[j] != 0 {
			return true
		}
	}
	return x[i]&(1<<(k%64)-1) != 0
}

// varianceFixed returns (n·s2 − s1²)/n² correctly rounded, for sums s1 and
// s2 in units, s2 not negative and 0 < n ≤ 2^26, in integers: with s1 and
// s2 counting units of 2^-fixFrac, the numerator is N·2^(-2·fixFrac) for the
// integer N = n·s2·2^fixFrac − s1², exact in 512 bits, and n² is one word.
// A negative numerator, only from a corrupt state, gives 0. It reports
// false for a positive N below 2^116, too small to keep 53 bits and round
// after dividing: never so for sums of numbers and of their squares, as the
// squares hold only multiples of the unit, and N is then one of 2^fixFrac.
func varianceFixed(n int64, s1, s2 *fixed) (float64, bool) {
	a := *s1
	if int64(a[fixLimbs-1]) < 0 {
		a = fixed{}
		a.subFixed(s1) // in range, as s1 is
	}
	var num [2 * fixLimbs]uint64 // n·s2·2^fixFrac, then less s1²
	var carry uint64
	for i, x := range s2 {
		hi, lo := bits.Mul64(x, uint64(n))
		var c uint64
		lo, c = bits.Add64(lo, carry, 0)
		carry = hi + c
		shlInto(num[:], lo, 64*i+fixFrac)
	}
	shlInto(num[:], carry, 64*fixLimbs+fixFrac)
	var sq [2 * fixLimbs]uint64
	for i := range a {
		carry = 0
		for j := range a {
			hi, lo := bits.Mul64(a[i], a[j])
			var c uint64
			lo, c = bits.Add64(lo, sq[i+j], 0)
			hi += c
			lo, c = bits.Add64(lo, carry, 0)
			sq[i+j], carry = lo, hi+c
		}
		sq[i+fixLimbs] = carry
	}
	var borrow uint64
	for i := range num {
		num[i], borrow = bits.Sub64(num[i], sq[i], borrow)
	}
	top := len(num) - 1
	for top >= 0 && num[top] == 0 {
		top--
	}
	if borrow != 0 || top < 0 {
		return 0, true
	}
	if 64*top+bits.Len64(num[top]) < 116 { // the quotient by n² < 2^52 would have under 64 bits
		return 0, false
	}
	d := uint64(n) * uint64(n)
	var q [2 * fixLimbs]uint64
	var r uint64
	for i := len(num) - 1; i >= 0; i-- {
		q[i], r = bits.Div64(r, num[i], d)
	}
	top = len(q) - 1
	for q[top] == 0 {
		top--
	}
	sh := 64*top + bits.Len64(q[top]) - 53 // q's bits below its 53 highest
	m := shrLimbs(q[:], sh)
	if bitLimbs(q[:], sh-1) && (m&1 == 1 || r != 0 || anyBelowLimbs(q[:], sh-1)) {
		if m++; m == 1<<53 {
			m, sh = 1<<52, sh+1
		}
	}
	return math.Ldexp(float64(m), sh-2*fixFrac), true
}

// shlInto adds x·2^sh to z, whose bits it must not overlap: z is zero
// there, and x·2^sh fits in z.
func shlInto(z []uint64, x uint64, sh int) {
	i, o := sh/64, uint(sh%64)
	z[i] |= x << o
	if o > 0 && i+1 < len(z) {
		z[i+1] |= x >> (64 - o)
	}
}

// partials appends f's canonical partials to dst, smallest first: the sum
// rounded, then the remainder rounded, and so on. Each is a multiple of the
// unit no larger than the sum, so taking it away is exact.
func (f fixed) partials(dst []float64) []float64 {
	start := len(dst)
	for {
		q, sh, neg := f.round()
		if q == 0 {
			break
		}
		dst = append(dst, toFloat(q, sh, neg))
		var v fixed
		if v.place(q, sh); neg {
			f.addFixed(&v)
		} else {
			f.subFixed(&v)
		}
	}
	slices.Reverse(dst[start:])
	return dst
}
