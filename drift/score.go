package drift

import "math"

// Epsilon replaces an empty bin's share in PSI, which is infinite
// otherwise. It bounds PSI: MaxPSI is the score of two distributions each
// wholly in a bin the other never fills.
const Epsilon = 1e-4

// MaxPSI is the largest PSI of two distributions over bins.
var MaxPSI = 2 * (1 - Epsilon) * math.Log(1/Epsilon)

// PSI is the Population Stability Index of actual against expected, two
// distributions given as counts over the same bins:
//
//	PSI = Σ (a_i − e_i) · ln(a_i / e_i)
//
// with a_i and e_i the bins' shares, a share of 0 counted as Epsilon. It is
// 0 for identical distributions and grows with the difference; 0.1 is
// commonly read as a moderate shift, 0.25 as a large one. Either side with
// no counts at all gives 0.
func PSI(actual, expected []float64) float64 {
	na, ne := sum(actual), sum(expected)
	if na == 0 || ne == 0 {
		return 0
	}
	psi := 0.0
	for i := range actual {
		a, e := max(actual[i]/na, Epsilon), max(expected[i]/ne, Epsilon)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// JS is the Jensen–Shannon distance between two distributions given as
// counts over the same bins: the square root of their Jensen–Shannon
// divergence in bits,
//
//	JSD = ½ Σ a_i log₂(a_i / m_i) + ½ Σ e_i log₂(e_i / m_i),  m = (a + e) / 2
//
// 0 for identical distributions, 1 for distributions with no bin in common.
// Either side with no counts at all gives 0.
func JS(actual, expected []float64) float64 {
	na, ne := sum(actual), sum(expected)
	if na == 0 || ne == 0 {
		return 0
	}
	d := 0.0
	for i := range actual {
		a, e := actual[i]/na, expected[i]/ne
		m := (a + e) / 2
		if a > 0 {
			d += a * math.Log2(a/m)
		}
		if e > 0 {
			d += e * math.Log2(e/m)
		}
	}
	return math.Sqrt(max(d/2, 0)) // rounding can leave a tiny negative
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}
