package onnx_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/cuda/cudatest"
	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

// BenchmarkDevices evaluates the 256→512→256→1 and 1024→4096→4096→1 MLPs
// on the CPU (every core) and on the GPU, in float32 and in TF32, in one
// run, for batches of 1 to 16,384 rows: rows per second, and the p50 and
// p99 latency of a batch, copies to and from the GPU included. Without a
// GPU only the CPU runs.
func BenchmarkDevices(b *testing.B) {
	gpu := cudatest.Available(b)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, widths := range [][]int{{256, 512, 256, 1}, {1024, 4096, 4096, 1}} {
		m, err := onnx.Parse(onnxtest.Marshal(b, onnxtest.MLP(7, widths...)))
		if err != nil {
			b.Fatal(err)
		}
		backends := []struct {
			name    string
			predict func(x []float32, rows int, out []float32) error
		}{{"cpu", func(x []float32, rows int, out []float32) error { m.Predict(x, rows, out); return nil }}}
		if gpu {
			for _, tf32 := range []bool{false, true} {
				g, err := m.OnGPU(cudatest.Device(b), onnx.GPUOptions{TF32: tf32})
				if err != nil {
					b.Fatal(err)
				}
				defer g.Close()
				name := "gpu-fp32"
				if tf32 {
					name = "gpu-tf32"
				}
				backends = append(backends, struct {
					name    string
					predict func(x []float32, rows int, out []float32) error
				}{name, g.Predict})
			}
		}
		const pool = 16 << 10
		nf, no := m.NumFeatures(), m.NumOutputs()
		x := onnxtest.Randn(rng, pool*nf, 1)
		out := make([]float32, pool*no)
		for _, rows := range []int{1, 16, 256, 4096, 16384} {
			for _, be := range backends {
				b.Run(fmt.Sprintf("mlp=%s/rows=%d/%s", layers(widths), rows, be.name), func(b *testing.B) {
					var lat []time.Duration
					at := 0
					for b.Loop() {
						start := time.Now()
						if err := be.predict(x[at*nf:(at+rows)*nf], rows, out); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(start))
						if at += rows; at+rows > pool {
							at = 0
						}
					}
					slices.Sort(lat)
					b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
					b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
				})
			}
		}
	}
}

// layers names an MLP by its widths: 256-512-256-1.
func layers(widths []int) string {
	s := fmt.Sprint(widths[0])
	for _, w := range widths[1:] {
		s += fmt.Sprintf("-%d", w)
	}
	return s
}
