package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
)

// mlpServer is serve with model mlp: an ONNX network of two inputs, the
// average amount of a user (feature service pair) and request_context.x,
// in versions 1, 2, 3, 10 and 20, production 1.
func mlpServer(tb testing.TB) *serve.Server {
	srv, _, _ := modelServer(tb, "double(request.x)")
	return srv
}

// modelServer is mlpServer with x given by the expression x, and its
// repository and models directory.
func modelServer(tb testing.TB, x string) (*serve.Server, *model.Repository, string) {
	return modelServerOf(tb, "user_txn@1:amount_avg_24h", x)
}

// modelServerOf is modelServer with the feature service's feature, the
// model's first input, given.
func modelServerOf(tb testing.TB, feature, x string) (*serve.Server, *model.Repository, string) {
	dir := tb.TempDir()
	base, err := os.ReadFile("testdata/bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	defsPath := filepath.Join(dir, "definitions.yaml")
	writeFile(tb, defsPath, string(base)+`
feature_services:
  - name: pair
    features: [`+feature+`]
    on_demand:
      - {name: x, expr: "`+x+`"}
`)
	defs, err := features.Load(defsPath)
	if err != nil {
		tb.Fatal(err)
	}
	artifact := string(onnxtest.Marshal(tb, onnxtest.MLP(1, 2, 16, 16, 1)))
	for _, n := range []string{"1", "2", "3", "10", "20"} {
		v := filepath.Join(dir, "models", "mlp", n)
		if err := os.MkdirAll(v, 0o755); err != nil {
			tb.Fatal(err)
		}
		writeFile(tb, filepath.Join(v, "model.onnx"), artifact)
		writeFile(tb, filepath.Join(v, "model.yaml"), "format: onnx\nartifact: model.onnx\ninputs: {feature_service: pair}\noutput: probability\ndevice: cpu\n")
	}
	writeFile(tb, filepath.Join(dir, "models", "mlp", "aliases.yaml"), "production: 1\n")
	models, err := model.Open(model.Config{Dir: filepath.Join(dir, "models"), Definitions: defs})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { models.Close() })
	store, _ := startPebble(tb, online.TableOf(defs.View("user_txn", 1)), nil)
	reg := prometheus.NewRegistry()
	srv, err := serve.New(serve.Config{Definitions: defs, Store: store, Models: models, Registerer: reg, Gatherer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	return srv, models, filepath.Join(dir, "models")
}

// TestModelRemovedDuringRequest lists models while a reload removes one
// and another brings it back: each request answers from one snapshot of
// the repository, never a 500 (a handler read it twice and met a nil
// model).
func TestModelRemovedDuringRequest(t *testing.T) {
	srv, repo, dir := modelServer(t, "double(request.x)")
	saved := filepath.Join(t.TempDir(), "mlp")
	if err := os.CopyFS(saved, os.DirFS(filepath.Join(dir, "mlp"))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests, failed atomic.Int64
	for _, path := range []string{"/v1/models", "/v2/models/mlp", "/v2/models/mlp/versions/2"} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				requests.Add(1)
				if w.Code != http.StatusOK && w.Code != http.StatusNotFound {
					failed.Add(1)
					t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
				}
			}
		})
	}
	for start := time.Now(); time.Since(start) < time.Second && failed.Load() == 0; {
		if err := os.RemoveAll(filepath.Join(dir, "mlp")); err != nil {
			t.Fatal(err)
		}
		repo.Reload()
		if err := os.CopyFS(filepath.Join(dir, "mlp"), os.DirFS(saved)); err != nil {
			t.Fatal(err)
		}
		repo.Reload()
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests", requests.Load())
}

// TestPredictDynamicInput: a model input from an on-demand feature whose
// type the request context decides (request.x) must be a number when the
// request comes, and a float32; a string is a 400, not a missing value.
func TestPredictDynamicInput(t *testing.T) {
	srv, _, _ := modelServer(t, "request.x")
	for x, want := range map[string]int{`1.5`: 200, `true`: 200, `"1.5"`: 400, `"abc"`: 400} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/models/mlp/predict",
			strings.NewReader(`{"entities":{"user_id":["u1"]},"request_context":{"x":`+x+`}}`)))
		if w.Code != want {
			t.Errorf("x=%s: %d %s, want %d", x, w.Code, w.Body, want)
		}
		if want == 400 && !strings.Contains(w.Body.String(), "input x of entity 0 is a string: a model takes numbers") {
			t.Errorf("x=%s: %s, want an error naming input x", x, w.Body)
		}
	}
	// A double beyond float32's range would reach the model as an
	// infinity, and the prediction log as a null.
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/models/mlp/predict",
		strings.NewReader(`{"entities":{"user_id":["u1"]},"request_context":{"x":1e300}}`)))
	if w.Code != 400 || !strings.Contains(w.Body.String(), "input x of entity 0 is 1e+300, beyond the float32 range a model takes") {
		t.Errorf("x=1e300: %d %s, want a 400 naming input x", w.Code, w.Body)
	}
}

// TestPredictBadInput: a prediction's body is checked as a lookup's, but
// a model that is not there is a 404 whatever the body.
func TestPredictBadInput(t *testing.T) {
	srv, _, _ := modelServer(t, "request.x")
	for _, c := range []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"unknown model", "/v1/models/nope/predict", `{"entities": {"user_id": ["u1"]}, "request_context": {"x": 1}}`, 404, `unknown model "nope"`},
		{"unknown model, malformed body", "/v1/models/nope/predict", `{"entities": {`, 404, `unknown model "nope"`},
		{"malformed body", "/v1/models/mlp/predict", `{"entities": {`, 400, "request body is not valid JSON"},
		{"no entities", "/v1/models/mlp/predict", `{"request_context": {"x": 1}}`, 400, "entities is missing"},
		{"missing request context", "/v1/models/mlp/predict", `{"entities": {"user_id": ["u1"]}}`, 400, "request_context.x is missing"},
		{"too many values", "/v1/models/mlp/predict", `{"entities": {"user_id": ["u1"]}, "request_context": {"x": [` + strings.Repeat("0,", 600_000) + `0]}}`, 413,
			"request body holds more than 100000 JSON values"},
	} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(c.body)))
		var r struct {
			Error string `json:"error"`
			Code  int    `json:"code"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil || w.Code != c.code || r.Code != c.code || !strings.Contains(r.Error, c.want) {
			t.Errorf("%s: %d %s, want %d with an error containing %q", c.name, w.Code, w.Body, c.code, c.want)
		}
	}
}

// TestPredictNonFinite: the v2 metadata lists versions in order, and a
// model output JSON has no number for (NaN, from an entity serve does not
// know, or an infinity) is null, in /v1/models/{name}/predict and in
// /v2/models/{name}/infer alike.
func TestPredictNonFinite(t *testing.T) {
	ts := httptest.NewServer(mlpServer(t))
	defer ts.Close()

	post := func(path, body string, out any) {
		t.Helper()
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: not JSON: %v", path, err)
		}
	}
	// The v2 metadata lists the versions in order.
	resp, err := http.Get(ts.URL + "/v2/models/mlp")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct{ Versions []string }
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if want := []string{"1", "2", "3", "10", "20"}; !slices.Equal(meta.Versions, want) {
		t.Errorf("versions %v, want %v", meta.Versions, want)
	}

	// An unknown user's average is missing: NaN in, NaN out.
	var pred struct{ Predictions []*float64 }
	post("/v1/models/mlp/predict", `{"entities": {"user_id": ["nobody"]}, "request_context": {"x": 1}}`, &pred)
	if len(pred.Predictions) != 1 || pred.Predictions[0] != nil {
		t.Errorf("predictions %v, want [null]", pred.Predictions)
	}
	// Inputs near float32's largest overflow the layers.
	var infer struct{ Outputs []struct{ Data []*float64 } }
	post("/v2/models/mlp/infer", `{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [3e38, 3e38]}]}`, &infer)
	if len(infer.Outputs) != 1 || len(infer.Outputs[0].Data) != 1 || infer.Outputs[0].Data[0] != nil {
		t.Errorf("outputs %+v, want one null", infer.Outputs)
	}
	post("/v2/models/mlp/infer", `{"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`, &infer)
	// Both null predictions are counted, and the two numbers.
	resp, err = http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`quiver_serve_predictions_total{model="mlp",output="null",version="1"} 2`,
		`quiver_serve_predictions_total{model="mlp",output="number",version="1"} 2`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(metrics), "quiver_serve_predictions_total"))
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var lines []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "")
}

// TestPredictEmptyWindows: a model is given an entity without state as a
// training set has it before the entity's first event, its windows empty
// (a count of 0), where a lookup answers NOT_FOUND with a null, as Feast
// does.
func TestPredictEmptyWindows(t *testing.T) {
	srv, _, _ := modelServerOf(t, "user_txn@1:txn_count_1h", "double(request.x)")
	post := func(path, body string) string {
		t.Helper()
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		if w.Code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.String()
	}
	var pred struct{ Predictions []*float64 }
	json.Unmarshal([]byte(post("/v1/models/mlp/predict", `{"entities": {"user_id": ["nobody"]}, "request_context": {"x": 1}}`)), &pred)
	var infer struct{ Outputs []struct{ Data []*float64 } }
	json.Unmarshal([]byte(post("/v2/models/mlp/infer", `{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}]}`)), &infer)
	if len(pred.Predictions) != 1 || pred.Predictions[0] == nil || len(infer.Outputs) != 1 || len(infer.Outputs[0].Data) != 1 ||
		infer.Outputs[0].Data[0] == nil || *pred.Predictions[0] != *infer.Outputs[0].Data[0] {
		t.Errorf("unknown user's prediction %v, want the model's output for a count of 0, %+v", pred.Predictions, infer.Outputs)
	}
	got := post("/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["nobody"]}}`)
	if !strings.Contains(got, `{"values":[null],"statuses":["NOT_FOUND"]`) {
		t.Errorf("lookup of an unknown user: %s, want a null NOT_FOUND", got)
	}
}

// TestInferShapesAndInts: a v2 tensor's shape and integers are checked as
// numbers, whatever JSON writes them as.
func TestInferShapesAndInts(t *testing.T) {
	srv := mlpServer(t)
	tensor := func(shape, datatype, data string) string {
		return `{"inputs": [{"name": "input", "shape": ` + shape + `, "datatype": "` + datatype + `", "data": ` + data + `}]}`
	}
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{tensor("[1e9, 2]", "FP32", "[1, 2]"), 400, `has shape [1e+09 2], want [rows, 2] with 1 to 1000 rows`},
		{tensor("[1.5, 2]", "FP32", "[1, 2]"), 400, `has shape [1.5 2], want [rows, 2]`},
		{tensor("[1, 2e0]", "FP32", "[1, 2]"), 200, ""},
		{tensor(`["1", 2]`, "FP32", "[1, 2]"), 400, "not a v2 inference request"},
		{tensor("[1, 2]", "INT64", "[9223372036854775808, 1]"), 400, "value 0 of data, 9.223372036854776e+18, is not INT64"},
		{tensor("[1, 2]", "INT64", "[1, 9.3e18]"), 400, "value 1 of data, 9.3e+18, is not INT64"},
		{tensor("[1, 2]", "INT64", "[9223372036854775807, -9223372036854775808]"), 200, ""},
		{tensor("[1, 2]", "INT64", "[[-9223372036854775809, 9223372036854775807]]"), 400, "value 0 of data, -9.223372036854776e+18, is not INT64"},
		{tensor("[1, 2]", "INT64", "[9.223372036854775807e18, 1]"), 200, ""},
		{tensor("[1, 2]", "INT32", "[2147483647, -2147483648]"), 200, ""},
		{tensor("[1, 2]", "INT32", "[2147483648, 1]"), 400, "value 0 of data, 2.147483648e+09, is not INT32"},
	} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v2/models/mlp/infer", strings.NewReader(c.body)))
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", c.body, w.Code, w.Body, c.code, c.want)
		}
	}
}

// TestPredictAcrossServices: a canary or a shadow may read another feature
// service than production, with other join keys (risk needs the card and
// the merchant, user_risk the user only). A request with every key and
// context any live version needs is answered by whichever version its
// entity is routed to, and runs the shadow; one missing a key is refused
// for every entity, not for those routed to the version that needs it.
func TestPredictAcrossServices(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "models")
	for v, spec := range map[string]struct {
		service string
		inputs  int
	}{"1": {"user_risk", 2}, "2": {"risk", 3}} {
		vdir := filepath.Join(dir, "m", v)
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(vdir, "model.onnx"), string(onnxtest.Marshal(t, onnxtest.MLP(1, spec.inputs, 8, 1))))
		writeFile(t, filepath.Join(vdir, "model.yaml"), "format: onnx\nartifact: model.onnx\ninputs: {feature_service: "+spec.service+"}\noutput: probability\ndevice: cpu\n")
	}
	for _, aliases := range []string{"production: 1\ncanary: {version: 2, traffic: 0.5}\n", "production: 2\ncanary: {version: 1, traffic: 0.5}\n", "production: 1\nshadow: 2\n"} {
		writeFile(t, filepath.Join(dir, "m", "aliases.yaml"), aliases)
		models, err := model.Open(model.Config{Dir: dir, Definitions: f.defs})
		if err != nil {
			t.Fatal(err)
		}
		var tables []online.Table
		for _, v := range f.defs.Views {
			tables = append(tables, online.TableOf(v))
		}
		reg := prometheus.NewRegistry()
		srv, err := serve.New(serve.Config{Definitions: f.defs, Store: redis.New(f.redis, "quiver", tables), Models: models, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		versions := map[int]int{}
		for u := range 40 {
			body := fmt.Sprintf(`{"entities": {"user_id": ["u%d"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": 5}}`, u)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/models/m/predict", strings.NewReader(body)))
			var resp struct{ Version int }
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &resp) != nil {
				t.Fatalf("%s: user u%d with every key: %d %s", aliases, u, w.Code, w.Body)
			}
			versions[resp.Version]++

			w = httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/models/m/predict", strings.NewReader(fmt.Sprintf(`{"entities": {"user_id": ["u%d"]}}`, u))))
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "join key card_id is missing") || !strings.Contains(w.Body.String(), "request_context.amount is missing") {
				t.Fatalf("%s: user u%d with the user only: %d %s; want 400 naming card_id and amount", aliases, u, w.Code, w.Body)
			}
		}
		if strings.Contains(aliases, "canary") && (versions[1] == 0 || versions[2] == 0) {
			t.Errorf("%s: versions answering %v, want both", aliases, versions)
		}
		if err := srv.WaitShadows(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n, err := testutil.GatherAndCount(reg, "quiver_serve_shadow_failures_total"); err != nil || n != 0 {
			t.Errorf("%s: %d shadow failure series (%v), want none", aliases, n, err)
		}
		models.Close()
	}
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}
