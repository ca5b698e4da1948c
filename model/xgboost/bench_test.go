package xgboost_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// BenchmarkPredict scores batches of 1, 64 and 4096 rows with the largest
// fixture (regression: 24 trees of depth up to 6, 1166 nodes), and reports
// rows per second. The rows are drawn as gen.py draws its inputs, 15% of
// them missing; a batch of one cycles through 4096 of them, so that branch
// prediction cannot learn them.
func BenchmarkPredict(b *testing.B) {
	m, _, _, _ := loadFixture(b, "regression")
	nf, no := m.NumFeatures(), m.NumOutputs()
	rng := rand.New(rand.NewPCG(1, 2))
	const pool = 4096
	x := make([]float32, pool*nf)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if rng.Float64() < 0.15 {
			x[i] = float32(math.NaN())
		}
	}
	for _, n := range []int{1, 64, 4096} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			out := make([]float32, n*no)
			b.ReportAllocs()
			r := 0
			for b.Loop() {
				m.Predict(x[r*nf:(r+n)*nf], n, out)
				if r += n; r+n > pool {
					r = 0
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
