package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/model/xgboost"
)

// TestPredict: kcat → ingest → serve with a model repository; each
// prediction equals the model evaluated, in Go, on the fraud_v1 features
// serve looks up for the same entities and request, one entity at a time
// and 40 in one request.
func TestPredict(t *testing.T) {
	brokers := startBroker(t)
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)
	base, _ := startServe(t, brokers, t.TempDir(), "--models", "../../model/testdata/models")
	kcatProduce(t, brokers, txns)
	startIngest(t, brokers, t.TempDir())
	waitReady(t, base)
	waitForReference(t, base, defs, ref)

	raw, err := os.ReadFile("../../model/testdata/models/fraud/1/model.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := xgboost.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var users, merchants []string
	var amounts []float64
	for i := range 40 {
		users = append(users, fmt.Sprintf("u%03d", i))
		merchants = append(merchants, fmt.Sprintf("m%02d", i%25))
		amounts = append(amounts, float64(10+i*7))
	}
	entities := map[string]any{"user_id": users, "merchant_id": merchants}
	context := map[string]any{"amount": amounts}

	// The reference: the service's values as serve looks them up, through
	// the model in Go. Lookups and predictions a moment apart see the same
	// windows, unless a minute turns between them: then again.
	for attempt := 0; ; attempt++ {
		var look lookupResponse
		postJSON(t, base+"/get-online-features", map[string]any{"feature_service": "fraud_v1", "entities": entities, "request_context": context}, http.StatusOK, &look)
		var batch struct {
			Model       string    `json:"model"`
			Version     int       `json:"version"`
			RequestID   string    `json:"request_id"`
			Predictions []float64 `json:"predictions"`
		}
		postJSON(t, base+"/v1/models/fraud/predict", map[string]any{"entities": entities, "request_context": context}, http.StatusOK, &batch)
		if batch.Model != "fraud" || batch.Version != 1 || len(batch.RequestID) != 27 || len(batch.Predictions) != 40 {
			t.Fatalf("response %+v", batch)
		}
		in := make([]float32, 40*10)
		for r := range 40 {
			for f := range 10 {
				v, ok := look.Results[2+f].Values[r].(float64)
				if !ok {
					v = math.NaN()
				}
				in[r*10+f] = float32(v)
			}
		}
		want := make([]float32, 40)
		m.Predict(in, 40, want)
		var diffs []string
		for r := range 40 {
			if math.Abs(batch.Predictions[r]-float64(want[r])) > 1e-6 {
				diffs = append(diffs, fmt.Sprintf("row %d: %v, want %v", r, batch.Predictions[r], want[r]))
			}
			// One entity per request gives the same.
			var one struct{ Predictions []float64 }
			postJSON(t, base+"/v1/models/fraud/predict", map[string]any{
				"entities":        map[string]any{"user_id": []string{users[r]}, "merchant_id": []string{merchants[r]}},
				"request_context": map[string]any{"amount": amounts[r]}}, http.StatusOK, &one)
			if math.Abs(one.Predictions[0]-float64(want[r])) > 1e-6 {
				diffs = append(diffs, fmt.Sprintf("row %d alone: %v, want %v", r, one.Predictions[0], want[r]))
			}
		}
		if len(diffs) == 0 {
			break
		}
		if attempt == 2 {
			t.Fatalf("%d predictions differ from the model on the looked-up features, like:\n%s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "\n"))
		}
	}

	// Errors.
	var e struct {
		Error string
		Code  int
	}
	postJSON(t, base+"/v1/models/nope/predict", map[string]any{"entities": entities}, http.StatusNotFound, &e)
	if !strings.Contains(e.Error, `unknown model "nope"`) {
		t.Errorf("unknown model: %+v", e)
	}
	postJSON(t, base+"/v1/models/fraud/predict", map[string]any{"entities": entities, "features": []string{"x"}}, http.StatusBadRequest, &e)
	postJSON(t, base+"/v1/models/fraud/predict", map[string]any{"entities": map[string]any{"user_id": users}}, http.StatusBadRequest, &e)
	if !strings.Contains(e.Error, "join key merchant_id is missing") {
		t.Errorf("missing join key: %+v", e)
	}
	var list struct {
		Models []struct {
			Name     string
			Versions []struct{ Version int }
			Aliases  struct{ Production int }
		}
	}
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Models) != 1 || list.Models[0].Name != "fraud" || list.Models[0].Aliases.Production != 1 || len(list.Models[0].Versions) != 1 {
		t.Errorf("GET /v1/models: %+v", list)
	}
}

// postJSON posts body, as JSON, or as it is if it is a string.
func postJSON(t *testing.T, url string, body any, wantCode int, out any) {
	t.Helper()
	b, ok := body.(string)
	if !ok {
		raw, _ := json.Marshal(body)
		b = string(raw)
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(b))
	readJSON(t, "POST "+url, resp, err, wantCode, out)
}

// TestPredictionLogAndShadow: with a shadow alias, the response comes from
// production, and both versions' predictions of every row are logged to
// quiver.predictions with the request's id, inputs and outputs. The shadow
// reads its own feature service: fraud_v1's features in reverse order.
func TestPredictionLogAndShadow(t *testing.T) {
	repo := t.TempDir()
	for _, v := range []string{"1", "2"} {
		dir := filepath.Join(repo, "fraud", v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"model.yaml", "model.json"} {
			b, err := os.ReadFile(filepath.Join("../../model/testdata/models/fraud/1", f))
			if err != nil {
				t.Fatal(err)
			}
			if v == "2" && f == "model.yaml" {
				b = bytes.ReplaceAll(b, []byte("fraud_v1"), []byte("fraud_reversed"))
			}
			os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
	}
	os.WriteFile(filepath.Join(repo, "fraud", "aliases.yaml"), []byte("production: 1\nshadow: 2\n"), 0o644)
	defs, err := os.ReadFile(definitions)
	if err != nil {
		t.Fatal(err)
	}
	defsPath := filepath.Join(t.TempDir(), "definitions.yaml")
	os.WriteFile(defsPath, append(defs, `
  - name: fraud_reversed
    features: [merchant_txn@1:users_24h, merchant_txn@1:amount_avg_24h, merchant_txn@1:txn_count_1h, user_txn@1:merchants_24h,
      user_txn@1:amount_std_7d, user_txn@1:amount_max_24h, user_txn@1:amount_avg_24h, user_txn@1:amount_sum_1h, user_txn@1:txn_count_1h]
    on_demand:
      - {name: amount_vs_avg, expr: "request.amount / (f['user_txn@1:amount_avg_24h'] + 1.0)"}
`...), 0o644)

	brokers := startBroker(t)
	base, serve := startServe(t, brokers, t.TempDir(), "--models", repo, "--definitions", defsPath)
	kcatProduce(t, brokers, recentStream(200))
	startIngest(t, brokers, t.TempDir())
	waitReady(t, base)

	ids := map[string]bool{}
	for i := range 5 {
		var resp struct {
			Version     int
			RequestID   string `json:"request_id"`
			Predictions []float64
		}
		postJSON(t, base+"/v1/models/fraud/predict", map[string]any{
			"entities":        map[string]any{"user_id": []string{fmt.Sprintf("u%03d", i), "u001"}, "merchant_id": []string{"m01", "m02"}},
			"request_context": map[string]any{"amount": 10}}, http.StatusOK, &resp)
		if resp.Version != 1 {
			t.Fatalf("the shadow version answered: %+v", resp)
		}
		ids[resp.RequestID] = true
	}
	type logged struct {
		RequestID string `json:"request_id"`
		Row       int
		Model     string
		Version   int
		Shadow    bool
		Inputs    []*float64
		Output    []float64
	}
	seen := map[string]logged{}
	for deadline := time.Now().Add(10 * time.Second); len(seen) < 20 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range ingesttest.ConsumeAll(t, brokers, "quiver.predictions") {
			var p logged
			if err := json.Unmarshal(r.Value, &p); err != nil {
				t.Fatalf("a logged prediction is not JSON: %v: %s", err, r.Value)
			}
			if string(r.Key) != "fraud" || !ids[p.RequestID] || p.Model != "fraud" || len(p.Inputs) != 10 || len(p.Output) != 1 {
				t.Fatalf("logged %s: %+v", r.Key, p)
			}
			seen[fmt.Sprintf("%s/%d/%v", p.RequestID, p.Row, p.Shadow)] = p
		}
	}
	if len(seen) != 20 {
		t.Fatalf("%d predictions logged, want 5 requests × 2 rows × (production + shadow)", len(seen))
	}
	for k, p := range seen {
		if p.Shadow != (p.Version == 2) {
			t.Errorf("%s: version %d logged as shadow %v", k, p.Version, p.Shadow)
		}
		if p.Shadow {
			continue
		}
		shadow := seen[fmt.Sprintf("%s/%d/true", p.RequestID, p.Row)]
		want := append(slices.Clone(p.Inputs[:9]), p.Inputs[9])
		slices.Reverse(want[:9])
		if !slices.EqualFunc(shadow.Inputs, want, func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }) {
			t.Errorf("%s: shadow inputs %v, want production's %v reversed", k, deref(shadow.Inputs), deref(p.Inputs))
		}
	}

	// The predictions answered just before a stop, and their shadow's,
	// are logged before serve exits.
	var last struct {
		RequestID string `json:"request_id"`
	}
	postJSON(t, base+"/v1/models/fraud/predict", map[string]any{
		"entities":        map[string]any{"user_id": []string{"u001", "u002", "u003"}, "merchant_id": []string{"m01", "m02", "m03"}},
		"request_context": map[string]any{"amount": 10}}, http.StatusOK, &last)
	if err := serve.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	rows := map[string]bool{}
	for _, r := range ingesttest.ConsumeAll(t, brokers, "quiver.predictions") {
		var p logged
		if err := json.Unmarshal(r.Value, &p); err == nil && p.RequestID == last.RequestID {
			rows[fmt.Sprintf("%d/%v", p.Row, p.Shadow)] = true
		}
	}
	if len(rows) != 6 {
		t.Errorf("%d of the 3 rows predicted just before SIGTERM logged, by production and shadow: %v", len(rows), rows)
	}
}

func deref(xs []*float64) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		if x != nil {
			out[i] = *x
		}
	}
	return out
}
