package drift

import (
	"encoding/json"
	"math"
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
	Output    []float32 `json:"output"`
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

func (n Number) MarshalJSON() ([]byte, error) {
	if n != n {
		return []byte("null"), nil
	}
	return json.Marshal(float32(n))
}

func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var f float32
	err := json.Unmarshal(b, &f)
	*n = Number(f)
	return err
}
