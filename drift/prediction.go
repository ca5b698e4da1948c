package drift

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Prediction is one record of the prediction log (<prefix>.predictions,
// keyed by model): a row of a prediction request, which serve logs and the
// detectors read.
type Prediction struct {
	RequestID string    `json:"request_id"`
	Row       int       `json:"row"`
	Model     string    `json:"model"`
	Version   int       `json:"version"`
	Shadow    bool      `json:"shadow,omitempty"` // computed beside production, not returned
	Inputs    []Number  `json:"inputs"`           // null for a missing feature
	Output    []Number  `json:"output"`
	Time      time.Time `json:"time"`
}

// Number is a model input: a float32 that is null in JSON when it is NaN (a
// missing value), as JSON has no NaN.
type Number float32

// Numbers converts model inputs.
func Numbers(xs []float32) []Number {
	out := make([]Number, len(xs))
	for i, x := range xs {
		out[i] = Number(x)
	}
	return out
}

// MarshalJSON writes the number, or null for NaN (and infinities, which
// JSON has neither).
func (n Number) MarshalJSON() ([]byte, error) {
	if f := float64(n); math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(n), 'g', -1, 32), nil
}

// UnmarshalJSON reads a number, or null as NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		return fmt.Errorf("model input %q: want a number or null", b)
	}
	*n = Number(f)
	return nil
}
