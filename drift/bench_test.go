package drift

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchDetector watches 10 number inputs of 10 bins each and the output,
// over count windows of 1,000 predictions sliding by 100.
func benchDetector(tb testing.TB) (*Detector, []string) {
	prof := &Profile{Output: &FeatureProfile{Name: "p", Type: "float", Count: 10, Edges: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, Counts: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}}
	var names []string
	for i := range 10 {
		fp := *prof.Output
		fp.Name = fmt.Sprintf("f%d", i)
		prof.Features = append(prof.Features, fp)
		names = append(names, fp.Name)
	}
	d, err := NewDetector(Config{Window: Window{Count: 1000}, Slide: Window{Count: 100}}, prof, names)
	if err != nil {
		tb.Fatal(err)
	}
	return d, names
}

// BenchmarkDetectorAdd: feature values counted per second on one core (a
// prediction of 10 inputs and an output is 11 values; a window is scored
// every 100 predictions).
func BenchmarkDetectorAdd(b *testing.B) {
	d, names := benchDetector(b)
	r := rand.New(rand.NewPCG(1, 2))
	rows := make([][]float32, 4096)
	for i := range rows {
		rows[i] = make([]float32, len(names)+1)
		for j := range rows[i] {
			rows[i][j] = r.Float32()
		}
	}
	t := time.Now()
	b.ResetTimer()
	for i := range b.N {
		row := rows[i%len(rows)]
		if _, err := d.Add(t, row[:len(names)], row[len(names)], int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(d.columns))/b.Elapsed().Seconds(), "values/s")
}

// BenchmarkDetectorMemory: heap bytes per watched column of a detector with
// windows of 10 slides and 10-bin profiles.
func BenchmarkDetectorMemory(b *testing.B) {
	const n = 1000
	ds := make([]*Detector, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range ds {
		ds[i], _ = benchDetector(b)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	cols := n * len(ds[0].columns)
	for range b.N {
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(cols), "B/column")
	runtime.KeepAlive(ds)
}
