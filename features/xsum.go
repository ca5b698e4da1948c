package features

import (
	"math"
	"math/big"
)

// xsum is an exact sum of float64s: non-overlapping partials (Shewchuk's
// algorithm, as in Python's math.fsum) whose exact total is the exact sum of
// every value added. Its value is that sum correctly rounded, so it does not
// depend on the order values arrive in or on how tiles group them: ingest,
// replays and backfills agree to the bit. Values must be finite.
type xsum []float64

func (s *xsum) add(x float64) {
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

// stddev is the population standard deviation of n values with exact sum s1
// and exact sum of squares s2: the square root of the correctly rounded
// variance (n·s2 − s1²)/n².
func stddev(n int64, s1, s2 xsum) float64 {
	num := new(big.Float).SetPrec(bigPrec).SetInt64(n)
	num.Mul(num, s2.big())
	sq := s1.big()
	num.Sub(num, sq.Mul(sq, sq))
	den := new(big.Float).SetInt64(n)
	den.Mul(den, den)
	// The numerator and denominator are exact, so one division rounded to
	// float64 precision is the correctly rounded variance.
	v, _ := new(big.Float).SetPrec(53).Quo(num, den).Float64()
	return math.Sqrt(max(v, 0))
}
