package onnx_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

// benchModel is the 256→512→256→1 MLP of the benchmark (ReLU, then a
// sigmoid), built in Go rather than committed: its weights are a megabyte.
func benchModel(tb testing.TB) *onnx.Model {
	m, err := onnx.Parse(onnxtest.Marshal(tb, onnxtest.MLP(7, 256, 512, 256, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestMLP checks the benchmark's model against a plain evaluation of it in
// float64.
func TestMLP(t *testing.T) {
	pb := onnxtest.MLP(7, 256, 512, 256, 1)
	m, err := onnx.Parse(onnxtest.Marshal(t, pb))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const rows = 100
	x := onnxtest.Randn(rng, rows*256, 1)
	got := make([]float32, rows)
	m.Predict(x, rows, got)
	inits := pb.GetGraph().GetInitializer()
	maxErr := 0.0
	for r := range rows {
		h := make([]float64, 256)
		for i := range h {
			h[i] = float64(x[r*256+i])
		}
		for l := 0; l < 3; l++ {
			w, b := floats(inits[2*l].GetRawData()), floats(inits[2*l+1].GetRawData())
			next := make([]float64, len(b))
			for j := range next {
				s := float64(b[j])
				for i, v := range h {
					s += v * float64(w[j*len(h)+i])
				}
				if l < 2 {
					s = max(s, 0)
				} else {
					s = 1 / (1 + math.Exp(-s))
				}
				next[j] = s
			}
			h = next
		}
		maxErr = max(maxErr, math.Abs(h[0]-float64(got[r])))
	}
	if maxErr > tolerance {
		t.Errorf("max error %.3g", maxErr)
	}
	t.Logf("max error %.3g", maxErr)
}

func floats(raw []byte) []float32 {
	f := make([]float32, len(raw)/4)
	for i := range f {
		f[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return f
}

// BenchmarkPredict evaluates batches of 1, 64 and 4096 rows with the
// 256→512→256→1 MLP, and reports rows per second. A batch of one cycles
// through 4096 rows.
func BenchmarkPredict(b *testing.B) {
	m := benchModel(b)
	nf, no := m.NumFeatures(), m.NumOutputs()
	rng := rand.New(rand.NewPCG(1, 2))
	const pool = 4096
	x := onnxtest.Randn(rng, pool*nf, 1)
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
