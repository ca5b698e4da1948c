// Package modeltest checks model formats against reference fixtures: an
// artifact and its expected outputs, written by a format's testdata/gen.py
// with the reference implementation.
package modeltest

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// Model is what a format's loader returns.
type Model interface {
	NumFeatures() int
	NumOutputs() int
	Predict(x []float32, rows int, out []float32)
}

// expected is a fixture's reference: rows of inputs (null for a missing
// value) and the reference's outputs for them, under outputs or, as
// XGBoost's fixtures name them, predictions.
type expected struct {
	Inputs      [][]*float64 `json:"inputs"`
	Outputs     [][]float64  `json:"outputs"`
	Predictions [][]float64  `json:"predictions"`
}

// Load loads the artifact at path with load, and the reference at
// expectedPath: the model, the inputs and expected outputs row-major, and
// the number of rows.
func Load[M Model](tb testing.TB, path, expectedPath string, parse func([]byte) (M, error)) (M, []float32, []float32, int) {
	tb.Helper()
	art, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := parse(art)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	b, err := os.ReadFile(expectedPath)
	if err != nil {
		tb.Fatal(err)
	}
	var e expected
	if err := json.Unmarshal(b, &e); err != nil {
		tb.Fatalf("%s: %v", expectedPath, err)
	}
	outs := e.Outputs
	if outs == nil {
		outs = e.Predictions
	}
	rows := len(e.Inputs)
	if len(outs) != rows {
		tb.Fatalf("%s: %d rows of inputs, %d of outputs", expectedPath, rows, len(outs))
	}
	x := make([]float32, 0, rows*m.NumFeatures())
	want := make([]float32, 0, rows*m.NumOutputs())
	for i, row := range e.Inputs {
		if len(row) != m.NumFeatures() || len(outs[i]) != m.NumOutputs() {
			tb.Fatalf("%s: row %d has %d inputs and %d outputs", expectedPath, i, len(row), len(outs[i]))
		}
		for _, v := range row {
			if v == nil {
				x = append(x, float32(math.NaN()))
			} else {
				x = append(x, float32(*v))
			}
		}
		for _, v := range outs[i] {
			want = append(want, float32(v))
		}
	}
	return m, x, want, rows
}

// Agree checks that m predicts want for x within tolerance (absolute, or
// relative beyond 1 in magnitude), and that each row alone gives the bits
// it gives in the whole batch. It returns the largest error.
func Agree(t *testing.T, m Model, x, want []float32, rows int, tolerance float64) float64 {
	t.Helper()
	got := make([]float32, len(want))
	m.Predict(x, rows, got)
	nf, no := m.NumFeatures(), m.NumOutputs()
	one := make([]float32, no)
	maxErr := 0.0
	for r := range rows {
		m.Predict(x[r*nf:(r+1)*nf], 1, one)
		for k := range one {
			i := r*no + k
			if math.Float32bits(one[k]) != math.Float32bits(got[i]) {
				t.Errorf("row %d output %d: %v alone, %v in the batch", r, k, one[k], got[i])
			}
			d := math.Abs(float64(got[i])-float64(want[i])) / max(1, math.Abs(float64(want[i])))
			maxErr = max(maxErr, d)
			if !(d <= tolerance) {
				t.Errorf("row %d output %d: got %v, the reference %v", r, k, got[i], want[i])
			}
		}
	}
	return maxErr
}
