package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/model"
)

// TestHotReload: under a steady load of predictions, a new version made
// production takes over, and a broken one is refused while the previous
// keeps serving; no request fails meanwhile.
func TestHotReload(t *testing.T) {
	repo := t.TempDir()
	addVersion := func(v, yaml string) {
		dir := filepath.Join(repo, "fraud", v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("../../model/testdata/models/fraud/1/model.json")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "model.json"), b, 0o644)
		os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(yaml), 0o644)
	}
	spec := "format: xgboost-json\nartifact: model.json\ninputs: {feature_service: fraud_v1}\n"
	setAliases := func(s string) {
		// Atomically, as a deployment would.
		tmp := filepath.Join(repo, "fraud", ".aliases.tmp")
		os.WriteFile(tmp, []byte(s), 0o644)
		if err := os.Rename(tmp, filepath.Join(repo, "fraud", "aliases.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	addVersion("1", spec)
	setAliases("production: 1\n")

	brokers := startBroker(t)
	base, _ := startServe(t, brokers, t.TempDir(), "--models", repo)
	kcatProduce(t, brokers, recentStream(200))
	startIngest(t, brokers, t.TempDir())
	waitReady(t, base)

	var served [4]atomic.Int64 // by version
	var failures atomic.Int64
	var lastFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Predictions, and v2 inferences on the production version.
	predict := []string{"/v1/models/fraud/predict", `{"entities": {"user_id": ["u001"], "merchant_id": ["m01"]}, "request_context": {"amount": 5}}`}
	infer := []string{"/v2/models/fraud/infer", `{"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}]}`}
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := [][]string{predict, infer}[i%2]
				resp, err := http.Post(base+req[0], "application/json", strings.NewReader(req[1]))
				if err != nil {
					failures.Add(1)
					lastFailure.Store(err.Error())
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var out struct {
					Version      int
					ModelVersion int `json:"model_version,string"`
				}
				if resp.StatusCode == http.StatusOK && json.Unmarshal(raw, &out) == nil && out.ModelVersion > 0 {
					out.Version = out.ModelVersion
				}
				if resp.StatusCode != http.StatusOK || out.Version < 1 || out.Version > 3 {
					failures.Add(1)
					lastFailure.Store(string(raw))
					continue
				}
				served[out.Version].Add(1)
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("version 1 to serve", func() bool { return served[1].Load() > 50 })
	addVersion("2", spec)
	setAliases("production: 2\n")
	waitFor("version 2 to take over", func() bool { return served[2].Load() > 50 })
	addVersion("3", strings.Replace(spec, "xgboost-json", "pmml", 1))
	setAliases("production: 3\n")
	before := served[2].Load()
	time.Sleep(3 * time.Second) // several reload passes
	close(stop)
	wg.Wait()
	if served[3].Load() != 0 || served[2].Load() <= before {
		t.Errorf("after a broken version: %d served by 3, %d more by 2; want none and some", served[3].Load(), served[2].Load()-before)
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d requests failed during the reloads, like: %v", n, lastFailure.Load())
	}
	t.Logf("served by version 1: %d, 2: %d", served[1].Load(), served[2].Load())

	// A canary is sticky per entity, whatever the order of the join keys
	// in the body. The broken version 3, which no alias names
	// now, does not hold the change back.
	setAliases("production: 2\ncanary: {version: 1, traffic: 0.5}\n")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var list struct {
			Models []struct{ Aliases model.Aliases }
		}
		getJSON(t, base+"/v1/models", http.StatusOK, &list)
		if len(list.Models) == 1 && list.Models[0].Aliases.Canary != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the canary was not loaded")
		}
	}
	version := func(body string) int {
		var out struct{ Version int }
		postJSON(t, base+"/v1/models/fraud/predict", body, http.StatusOK, &out)
		return out.Version
	}
	var byVersion [3]int
	for u := range 20 {
		user, merchant := fmt.Sprintf("u%03d", u), fmt.Sprintf("m%02d", u%25)
		v := version(`{"entities": {"user_id": ["` + user + `"], "merchant_id": ["` + merchant + `"]}, "request_context": {"amount": 5}}`)
		if w := version(`{"request_context": {"amount": 5}, "entities": {"merchant_id": ["` + merchant + `"], "user_id": ["` + user + `"]}}`); w != v {
			t.Fatalf("%s at %s: version %d, and %d with the join keys in the other order", user, merchant, v, w)
		}
		// The entity is the user, the first feature's: at any merchant.
		for m := range 5 {
			other := fmt.Sprintf("m%02d", (u+m+1)%25)
			if w := version(`{"entities": {"user_id": ["` + user + `"], "merchant_id": ["` + other + `"]}, "request_context": {"amount": 5}}`); w != v {
				t.Fatalf("%s: version %d at %s, %d at %s", user, v, merchant, w, other)
			}
		}
		byVersion[v]++
	}
	if byVersion[1] == 0 || byVersion[2] == 0 {
		t.Errorf("of 20 users, %d went to the canary at 50%%", byVersion[1])
	}
	t.Logf("of 20 users, %d went to the canary", byVersion[1])
}
