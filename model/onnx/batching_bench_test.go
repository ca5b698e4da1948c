package onnx_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/model/batch"
)

// BenchmarkBatching runs 64 concurrent clients, each predicting one row at
// a time of the 256→512→256→1 MLP through a dynamic batcher, with batching
// on (up to 64 rows per call, 1 ms of queueing at most) and off (one row
// per call), for 3 s each, and reports requests per second and the p50 and
// p99 latency.
func BenchmarkBatching(b *testing.B) {
	m := benchModel(b)
	row := make([]float32, m.NumFeatures())
	for i := range row {
		row[i] = float32(i%13) / 13
	}
	for _, c := range []struct {
		name string
		size int
	}{{"off", 1}, {"on", 64}} {
		b.Run("batching="+c.name, func(b *testing.B) {
			bt, err := batch.New(batch.Config{Inputs: m.NumFeatures(), Outputs: m.NumOutputs(), MaxBatchSize: c.size,
				MaxQueueDelay: time.Millisecond, QueueCapacity: 4096},
				func(_ context.Context, in []float32, rows int, out []float32) error {
					m.Predict(in, rows, out)
					return nil
				})
			if err != nil {
				b.Fatal(err)
			}
			defer bt.Close()
			var mu sync.Mutex
			var lat []time.Duration
			deadline := time.Now().Add(3 * time.Second)
			start := time.Now()
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					var mine []time.Duration
					for time.Now().Before(deadline) {
						t := time.Now()
						if _, err := bt.Do(context.Background(), row, 1); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
