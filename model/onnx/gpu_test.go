package onnx_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/internal/cuda/cudatest"
	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

// Relative errors the GPU may have against the CPU, ‖gpu − cpu‖ / ‖cpu‖
// over the outputs: the acceptance criteria of float32 and of TF32.
const (
	fp32Agreement = 1e-5
	tf32Agreement = 1e-3
)

func onGPU(t *testing.T, m *onnx.Model, o onnx.GPUOptions) *onnx.GPUModel {
	t.Helper()
	g, err := m.OnGPU(cudatest.Device(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

// predictGPU evaluates on g into a buffer poisoned with a value no model
// here predicts, so that an output not written shows.
func predictGPU(t *testing.T, g *onnx.GPUModel, x []float32, rows int) []float32 {
	t.Helper()
	out := make([]float32, rows*g.NumOutputs())
	for i := range out {
		out[i] = -1e30
	}
	if err := g.Predict(x, rows, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// relativeError is ‖got − want‖ / ‖want‖ over the elements where want is
// a number; got must be NaN exactly where want is, else it is +Inf.
func relativeError(t *testing.T, got, want []float32) float64 {
	t.Helper()
	var diff, norm float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) != math.IsNaN(g) {
			t.Errorf("output %d: GPU %v, CPU %v", i, g, w)
			return math.Inf(1)
		}
		if !math.IsNaN(w) {
			diff += (g - w) * (g - w)
			norm += w * w
		}
	}
	if norm == 0 {
		return math.Sqrt(diff)
	}
	return math.Sqrt(diff / norm)
}

// TestGPUFixtures checks the GPU against the reference outputs, within the
// tolerance the CPU meets, on every fixture: every operator on the GPU.
func TestGPUFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, x, want, rows := loadFixture(t, fx.name)
			got := predictGPU(t, onGPU(t, m, onnx.GPUOptions{}), x, rows)
			maxErr := 0.0
			for i := range want {
				e := math.Abs(float64(got[i]) - float64(want[i]))
				if e /= max(1, math.Abs(float64(want[i]))); !(e <= tolerance) {
					t.Errorf("output %d: %v, want %v", i, got[i], want[i])
				}
				maxErr = max(maxErr, e)
			}
			t.Logf("%d rows: max error %.3g", rows, maxErr)
		})
	}
}

// gpuCases are models to compare on the GPU and the CPU: the fixtures'
// graphs and the benchmarks' MLPs.
func gpuCases(t *testing.T) map[string]*onnx.Model {
	cases := map[string]*onnx.Model{}
	for _, fx := range fixtures {
		cases[fx.name], _, _, _ = loadFixture(t, fx.name)
	}
	for _, widths := range [][]int{{256, 512, 256, 1}, {1024, 4096, 4096, 1}} {
		m, err := onnx.Parse(onnxtest.Marshal(t, onnxtest.MLP(7, widths...)))
		if err != nil {
			t.Fatal(err)
		}
		cases[fmt.Sprint("mlp", widths)] = m
	}
	return cases
}

// TestGPUMatchesCPU compares the GPU with the CPU on random rows, a few of
// them with a NaN, in float32 and TF32, for batches of one row, of some,
// and of more than the GPU evaluates at once.
func TestGPUMatchesCPU(t *testing.T) {
	cudatest.Device(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for name, m := range gpuCases(t) {
		for _, tf32 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tf32=%v", name, tf32), func(t *testing.T) {
				g := onGPU(t, m, onnx.GPUOptions{TF32: tf32, MaxRows: 100})
				limit := fp32Agreement
				if tf32 {
					limit = tf32Agreement
				}
				for _, rows := range []int{1, 37, 250} {
					x := onnxtest.Randn(rng, rows*m.NumFeatures(), 1)
					for r := 0; r < rows; r += 17 {
						x[r*m.NumFeatures()+rng.IntN(m.NumFeatures())] = float32(math.NaN())
					}
					want := make([]float32, rows*m.NumOutputs())
					m.Predict(x, rows, want)
					if e := relativeError(t, predictGPU(t, g, x, rows), want); !(e <= limit) {
						t.Errorf("%d rows: relative error %.3g, want at most %.0e", rows, e, limit)
					} else {
						t.Logf("%d rows: relative error %.3g", rows, e)
					}
				}
			})
		}
	}
}

// TestGPUConcurrent predicts from many goroutines at once on a model of
// two lanes: each caller gets its own rows' outputs.
func TestGPUConcurrent(t *testing.T) {
	m, err := onnx.Parse(onnxtest.Marshal(t, onnxtest.MLP(3, 64, 128, 4)))
	if err != nil {
		t.Fatal(err)
	}
	g := onGPU(t, m, onnx.GPUOptions{Lanes: 2})
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 9))
			for i := range 30 {
				rows := 1 + (c*30+i)%50
				x := onnxtest.Randn(rng, rows*m.NumFeatures(), 1)
				want := make([]float32, rows*m.NumOutputs())
				m.Predict(x, rows, want)
				out := make([]float32, len(want))
				if err := g.Predict(x, rows, out); err != nil {
					t.Error(err)
					return
				}
				if e := relativeError(t, out, want); !(e <= fp32Agreement) {
					t.Errorf("caller %d, batch %d: relative error %.3g", c, i, e)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestGPUFrees loads the large MLP on the GPU, predicts and closes it, a
// few times: the device's free memory comes back each time, as a serve
// replica that reloads its models needs.
func TestGPUFrees(t *testing.T) {
	d := cudatest.Device(t)
	m, err := onnx.Parse(onnxtest.Marshal(t, onnxtest.MLP(7, 1024, 4096, 4096, 1)))
	if err != nil {
		t.Fatal(err)
	}
	free := func() int {
		var f int
		if err := d.Do(func() (err error) { f, _, err = d.Memory(); return err }); err != nil {
			t.Fatal(err)
		}
		return f
	}
	before := free()
	x := make([]float32, m.NumFeatures())
	for range 3 {
		g, err := m.OnGPU(d, onnx.GPUOptions{})
		if err != nil {
			t.Fatal(err)
		}
		held := before - free()
		if held < g.DeviceBytes() {
			t.Errorf("the device has %d MiB less free, the model says it holds %d MiB", held>>20, g.DeviceBytes()>>20)
		}
		if err := g.Predict(x, 1, make([]float32, 1)); err != nil {
			t.Fatal(err)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if lost := before - free(); lost > 16<<20 {
			t.Fatalf("%d MiB not freed of the %d MiB the model held", lost>>20, held>>20)
		}
	}
}
