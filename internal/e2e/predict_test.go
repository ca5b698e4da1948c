package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"

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
	base := startServe(t, brokers, t.TempDir(), "--models", "../../model/testdata/models")
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

func postJSON(t *testing.T, url string, body any, wantCode int, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("POST %s: %d %s, want %d", url, resp.StatusCode, raw, wantCode)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, raw)
	}
}
