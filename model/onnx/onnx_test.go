package onnx_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/quiver-ml/quiver/model/modeltest"
	"github.com/quiver-ml/quiver/model/onnx"
)

// The fixtures: graphs that testdata/gen.py built with onnx 1.12.0, and the
// outputs of its numpy evaluator (float64) for test rows.
var fixtures = []struct {
	name     string
	features int
	outputs  int
}{
	{"gemm_relu_sigmoid", 10, 3},
	{"matmul_tanh_bn_softmax", 8, 5},
	{"mixed", 6, 4},
	{"rank3", 12, 2},
}

// tolerance is the acceptance criterion: agreement with the reference within
// 1e-5, absolute, or relative for outputs beyond 1 in magnitude.
const tolerance = 1e-5

func loadFixture(tb testing.TB, name string) (*onnx.Model, []float32, []float32, int) {
	tb.Helper()
	return modeltest.Load(tb, filepath.Join("testdata", name+".onnx"), filepath.Join("testdata", name+".expected.json"), onnx.Parse)
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, x, want, rows := loadFixture(t, fx.name)
			if m.NumFeatures() != fx.features || m.NumOutputs() != fx.outputs {
				t.Fatalf("%d features, %d outputs; want %d, %d", m.NumFeatures(), m.NumOutputs(), fx.features, fx.outputs)
			}
			if m.InputName() != "x" || m.OutputName() != "y" {
				t.Errorf("input %q, output %q; want x, y", m.InputName(), m.OutputName())
			}
			maxErr := modeltest.Agree(t, m, x, want, rows, tolerance)
			t.Logf("%d rows: max error %.3g", rows, maxErr)
		})
	}
}

// TestPredictParallel checks that batches large enough to be split across
// goroutines give the bits that rows evaluated one at a time give.
func TestPredictParallel(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, x, _, rows := loadFixture(t, fx.name)
			nf, no := m.NumFeatures(), m.NumOutputs()
			for _, n := range []int{63, 64, 65, 2000, 5003} {
				big := make([]float32, 0, n*nf)
				for len(big) < n*nf {
					big = append(big, x...)
				}
				big = big[:n*nf]
				got := make([]float32, n*no)
				m.Predict(big, n, got)
				one := make([]float32, no)
				for r := range n {
					m.Predict(big[r*nf:(r+1)*nf], 1, one)
					for k := range one {
						if a, b := one[k], got[r*no+k]; math.Float32bits(a) != math.Float32bits(b) {
							t.Fatalf("%d rows: row %d (fixture row %d) output %d: %v alone, %v in the batch", n, r, r%rows, k, a, b)
						}
					}
				}
			}
		})
	}
}

// TestNaN checks that a NaN input is a value: it spreads to the outputs
// that depend on it, and not to other rows.
func TestNaN(t *testing.T) {
	m, x, _, _ := loadFixture(t, "gemm_relu_sigmoid")
	nf, no := m.NumFeatures(), m.NumOutputs()
	x = append([]float32(nil), x[:3*nf]...)
	x[nf+4] = float32(math.NaN())
	out := make([]float32, 3*no)
	m.Predict(x, 3, out)
	for i, v := range out {
		if nan := math.IsNaN(float64(v)); nan != (i/no == 1) {
			t.Errorf("row %d output %d: %v", i/no, i%no, v)
		}
	}
}

func TestPredictEmptyAndShort(t *testing.T) {
	m, x, _, _ := loadFixture(t, "mixed")
	m.Predict(nil, 0, nil)
	for _, c := range []struct {
		x, out []float32
		rows   int
	}{
		{x[:m.NumFeatures()*2-1], make([]float32, 2*m.NumOutputs()), 2},
		{x[:m.NumFeatures()*2], make([]float32, 2*m.NumOutputs()-1), 2},
		{x, nil, -1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Predict of %d rows with %d inputs and %d outputs did not panic", c.rows, len(c.x), len(c.out))
				}
			}()
			m.Predict(c.x, c.rows, c.out)
		}()
	}
}

// TestConcurrent checks that goroutines can share a model (run it with
// -race).
func TestConcurrent(t *testing.T) {
	m, x, want, rows := loadFixture(t, "matmul_tanh_bn_softmax")
	done := make(chan []float32)
	for range 8 {
		go func() {
			got := make([]float32, len(want))
			for range 50 {
				m.Predict(x, rows, got)
			}
			done <- got
		}()
	}
	first := <-done
	for range 7 {
		got := <-done
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(first[i]) {
				t.Fatalf("output %d: %v and %v", i, got[i], first[i])
			}
		}
	}
}
