package serve_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzPredict sends any body to a model's /v2 infer and /v1 predict
// endpoints: each answer is a 200 with a JSON body, or a 4xx whose JSON body
// holds the error and its code; never a 5xx (DESIGN §5: never 500 for bad
// input). A 200 from infer holds one output row per input row.
func FuzzPredict(f *testing.F) {
	for _, s := range []string{
		`{"id": "r", "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`,
		`{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [[1, 2]]}], "outputs": [{"name": "output"}]}`,
		`{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1e39, null]}]}`,
		`{"inputs": [{"name": "input", "shape": [-1, 2], "datatype": "BYTES", "data": ["a"]}]}`,
		`{"entities": {"user_id": ["u1", "u2"]}, "request_context": {"x": [1, 2.5]}}`,
		`{"entities": {"user_id": [7]}, "request_context": {"x": "abc"}}`,
		`{"entities": {"user_id": ["u1"]}, "request_context": {"x": 1e400}}`,
		`{"entities": {}}`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	srv := mlpServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/v2/models/mlp/infer", "/v1/models/mlp/predict"} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
			switch code := rec.Code; {
			case code == http.StatusOK:
				var out struct {
					Outputs []struct {
						Shape []int
						Data  []*float64
					}
					Predictions []*float64
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
					t.Fatalf("%s: 200 with a body that is not JSON: %v\n%s", path, err, rec.Body)
				}
				if len(out.Outputs) == 1 && (len(out.Outputs[0].Shape) != 2 || len(out.Outputs[0].Data) != out.Outputs[0].Shape[0]) {
					t.Fatalf("%s: %d outputs for shape %v", path, len(out.Outputs[0].Data), out.Outputs[0].Shape)
				}
			case code >= 400 && code < 500:
				var e struct {
					Error string
					Code  int
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code != code {
					t.Fatalf("%s: %d with body %s, want a JSON error and its code", path, code, rec.Body)
				}
			default:
				t.Fatalf("%s: %d %s for body %q", path, code, rec.Body, body)
			}
		}
	})
}
