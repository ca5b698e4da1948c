package e2e_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/model/xgboost"
)

// TestOpenInferenceProtocol drives the /v2 endpoints with bodies shaped as
// the Open Inference Protocol's REST API has them, and checks the response
// shapes and the outputs against the model evaluated in Go.
func TestOpenInferenceProtocol(t *testing.T) {
	brokers := startBroker(t)
	base, _ := startServe(t, brokers, t.TempDir(), "--models", "../../model/testdata/models")
	for deadline := 0; ; deadline++ {
		if resp, err := http.Get(base + "/v2/health/live"); err == nil {
			var live map[string]any
			json.NewDecoder(resp.Body).Decode(&live)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || live["live"] != true {
				t.Fatalf("live: %d %v", resp.StatusCode, live)
			}
			break
		}
		if deadline > 200 {
			t.Fatal("serve did not start")
		}
		httpPause()
	}

	// Server metadata, then the model's.
	var server struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}
	getJSON(t, base+"/v2", http.StatusOK, &server)
	if server.Name != "quiver" || server.Version == "" || server.Extensions == nil {
		t.Errorf("server metadata %+v, want name quiver, a version and a list of extensions", server)
	}
	var meta map[string]any
	getJSON(t, base+"/v2/models/fraud", http.StatusOK, &meta)
	want := `{"inputs":[{"datatype":"FP32","name":"input","shape":[-1,10]}],"name":"fraud","outputs":[{"datatype":"FP32","name":"output","shape":[-1,1]}],"platform":"xgboost-json","versions":["1"]}`
	if got, _ := json.Marshal(meta); string(got) != want {
		t.Errorf("metadata\n%s\nwant\n%s", got, want)
	}
	var ready map[string]any
	getJSON(t, base+"/v2/models/fraud/ready", http.StatusOK, &ready)
	if ready["ready"] != true || ready["name"] != "fraud" {
		t.Errorf("model ready: %v", ready)
	}

	// Inference, flat and nested data, on the production and a named version.
	raw, err := os.ReadFile("../../model/testdata/models/fraud/1/model.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := xgboost.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, 3*10)
	for i := range in {
		in[i] = float32(i%7) * 1.5
	}
	expect := make([]float32, 3)
	m.Predict(in, 3, expect)
	nested := [][]float32{in[:10], in[10:20], in[20:]}
	for _, c := range []struct {
		path string
		data any
	}{{"/v2/models/fraud/infer", in}, {"/v2/models/fraud/versions/1/infer", nested}} {
		// Parameters, which the protocol allows on the request, its inputs
		// and its outputs, are taken and ignored.
		params := map[string]any{"priority": 1}
		var out struct {
			ModelName    string `json:"model_name"`
			ModelVersion string `json:"model_version"`
			ID           string `json:"id"`
			Outputs      []struct {
				Name     string    `json:"name"`
				Shape    []int     `json:"shape"`
				Datatype string    `json:"datatype"`
				Data     []float64 `json:"data"`
			} `json:"outputs"`
		}
		postJSON(t, base+c.path, map[string]any{"id": "req-1", "parameters": params,
			"inputs":  []map[string]any{{"name": "input", "shape": []int{3, 10}, "datatype": "FP32", "parameters": params, "data": c.data}},
			"outputs": []map[string]any{{"name": "output", "parameters": params}}}, http.StatusOK, &out)
		if out.ModelName != "fraud" || out.ModelVersion != "1" || out.ID != "req-1" || len(out.Outputs) != 1 ||
			out.Outputs[0].Name != "output" || out.Outputs[0].Datatype != "FP32" || !slices.Equal(out.Outputs[0].Shape, []int{3, 1}) {
			t.Fatalf("%s: response %+v", c.path, out)
		}
		for r := range 3 {
			if math.Abs(out.Outputs[0].Data[r]-float64(expect[r])) > 1e-6 {
				t.Errorf("%s row %d: %v, want %v", c.path, r, out.Outputs[0].Data[r], expect[r])
			}
		}
	}

	// Each row is logged for the drift detectors, as predictions are.
	logged := map[int][]float64{}
	for deadline := time.Now().Add(10 * time.Second); len(logged) < 3 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range ingesttest.ConsumeAll(t, brokers, "quiver.predictions") {
			var p struct {
				RequestID string `json:"request_id"`
				Row       int
				Version   int
				Inputs    []float64
			}
			if err := json.Unmarshal(r.Value, &p); err != nil || p.RequestID != "req-1" || p.Version != 1 {
				t.Fatalf("logged %s: %v", r.Value, err)
			}
			logged[p.Row] = p.Inputs
		}
	}
	for r := range 3 {
		want := make([]float64, 10)
		for i := range want {
			want[i] = float64(in[r*10+i])
		}
		if !slices.Equal(logged[r], want) {
			t.Errorf("row %d logged with inputs %v, want %v", r, logged[r], want)
		}
	}

	// GET's routes answer HEAD.
	for _, path := range []string{"/v2/health/live", "/v2/models/fraud", "/healthz", "/v1/models"} {
		resp, err := http.Head(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %s", path, resp.Status)
		}
	}

	// Errors: JSON bodies with the reason, 4xx.
	var e map[string]any
	for _, c := range []struct {
		path string
		body any
		code int
		want string
	}{
		{"/v2/models/nope/infer", map[string]any{"inputs": []any{}}, 404, `unknown model "nope"`},
		{"/v2/models/fraud/versions/9/infer", map[string]any{"inputs": []any{}}, 404, "version 9"},
		{"/v2/models/fraud/versions/0/infer", map[string]any{"inputs": []any{}}, 404, `version "0"`},
		{"/v2/models/fraud/versions/v1/infer", map[string]any{"inputs": []any{}}, 404, `version "v1"`},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{1, 9}, "datatype": "FP32", "data": make([]float32, 9)}}}, 400, "want [rows, 10]"},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{1, 10}, "datatype": "BYTES", "data": make([]float32, 10)}}}, 400, `datatype "BYTES"`},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{2, 10}, "datatype": "FP32", "data": make([]float32, 10)}}}, 400, "10 values of data for shape [2, 10]"},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{2, 10}, "datatype": "FP32", "data": [][]float32{make([]float32, 5), make([]float32, 15)}}}}, 400, "row 0 of data has 5 values, want 10"},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{1, 10}, "datatype": "FP32", "data": [][]float32{make([]float32, 5), make([]float32, 5)}}}}, 400, "2 rows of data for 1 rows"},
		{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "INT32", "data": [0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0]}]}`, 400, "value 2 of data, 0.5, is not INT32"},
		{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "INT32", "data": [0, 0, 0, 3e9, 0, 0, 0, 0, 0, 0]}]}`, 400, "value 3 of data, 3e+09, is not INT32"},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{1, 10}, "datatype": "FP32", "data": "x"}}}, 400, "data must be an array"},
		{"/v2/models/fraud/infer", map[string]any{"inputz": []any{}}, 400, "unknown field"},
		{"/v2/models/fraud/infer", map[string]any{"inputs": []map[string]any{{"name": "foo", "shape": []int{1, 10}, "datatype": "FP32", "data": make([]float32, 10)}}}, 400, `unknown input "foo" (the model has "input")`},
		{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [0, 0, 1e39, 0, 0, 0, 0, 0, 0, 0]}]}`, 400, "value 2 of data is out of the range of FP32"},
		{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [01, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}`, 400, "not valid JSON"},
		{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, null]}]}`, 400, "data holds a null"},
		{"/v2/models/fraud/infer", `{"id": "` + strings.Repeat("x", 5<<20) + `", "inputs": []}`, 413, "larger than the limit"},
		{"/v2/models/fraud/infer", `{"id": "` + strings.Repeat("x", 257) + `", "inputs": []}`, 400, "id is 257 bytes, at most 256"},
	} {
		postJSON(t, base+c.path, c.body, c.code, &e)
		if msg, _ := e["error"].(string); !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.path, e, c.want)
		}
	}
}

func getJSON(t *testing.T, url string, code int, out any) {
	t.Helper()
	resp, err := http.Get(url)
	readJSON(t, "GET "+url, resp, err, code, out)
}

// readJSON checks a response's status and decodes its JSON body into out.
func readJSON(t *testing.T, what string, resp *http.Response, err error, code int, out any) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode, raw, code)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: %v: %s", what, err, raw)
	}
}

func httpPause() { time.Sleep(25 * time.Millisecond) }
