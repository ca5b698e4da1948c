package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// startServe runs the serve binary on a free port; it returns the base URL
// and the process.
func startServe(t *testing.T, brokers []string, dataDir string, extra ...string) (string, *proc) {
	t.Helper()
	port := freeport.Get(t)
	args := append([]string{"--definitions", definitions, "--brokers", strings.Join(brokers, ","), "--data-dir", dataDir,
		"--listen", "127.0.0.1:" + strconv.Itoa(port), "--log-format", "json"}, extra...)
	p := start(t, "serve", args...)
	return "http://127.0.0.1:" + strconv.Itoa(port), p
}

// waitReady waits until serve's /readyz says it is ready.
func waitReady(t *testing.T, base string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	t.Fatalf("serve not ready within 30s: %s", last)
}

type lookupResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
		AsOf         string   `json:"as_of"`
	} `json:"metadata"`
	Results []struct {
		Values   []any    `json:"values"`
		Statuses []string `json:"statuses"`
	} `json:"results"`
}

// everything asks for every feature of both fraud views for all 40 users
// of the stream, each paired with a merchant, and one unknown pair.
func everything(defs *features.Definitions) (body []byte, users, merchants []string) {
	var refs []string
	for _, v := range defs.Views {
		for _, f := range v.Features {
			refs = append(refs, v.Ref()+":"+f.Name)
		}
	}
	for i := range 40 {
		users = append(users, fmt.Sprintf("u%03d", i))
		merchants = append(merchants, fmt.Sprintf("m%02d", i%25))
	}
	users, merchants = append(users, "nobody"), append(merchants, "nowhere")
	body, _ = json.Marshal(map[string]any{"features": refs, "entities": map[string]any{"user_id": users, "merchant_id": merchants}})
	return body, users, merchants
}

func lookup(t *testing.T, base string, body []byte) lookupResponse {
	t.Helper()
	resp, err := http.Post(base+"/get-online-features", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lookup: %d %s", resp.StatusCode, raw)
	}
	var r lookupResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("lookup: %v: %s", err, raw)
	}
	return r
}

// diffFromReference compares a response of everything with the engine's
// values at the response's as_of; it returns the differences.
func diffFromReference(t *testing.T, defs *features.Definitions, ref ingesttest.Ref, r lookupResponse, users, merchants []string) []string {
	asOf, err := time.Parse(time.RFC3339Nano, r.Metadata.AsOf)
	if err != nil {
		t.Fatalf("as_of %q: %v", r.Metadata.AsOf, err)
	}
	var diffs []string
	col := 2 // after user_id and merchant_id
	for _, v := range defs.Views {
		eng := ref.Engines[v.Ref()]
		keys := users
		if v.Entity == "merchant" {
			keys = merchants
		}
		out := make([]features.Value, len(v.Features))
		for row, key := range keys {
			st := ref.States[v.Ref()][key]
			if st != nil {
				if err := eng.Evaluate(st, asOf.UnixMilli(), out); err != nil {
					t.Fatal(err)
				}
			}
			for i, f := range v.Features {
				res := r.Results[col+i]
				want, wantStatus := jsonValue(out[i]), "PRESENT"
				if st == nil {
					want, wantStatus = nil, "NOT_FOUND"
				}
				if got := res.Values[row]; got != want || res.Statuses[row] != wantStatus {
					diffs = append(diffs, fmt.Sprintf("%s:%s of %s = %v %s, want %v %s", v.Ref(), f.Name, key, got, res.Statuses[row], want, wantStatus))
				}
			}
		}
		col += len(v.Features)
	}
	return diffs
}

func jsonValue(v features.Value) any {
	switch v.Type() {
	case features.TypeString:
		return v.Str()
	case features.TypeInt:
		return float64(v.Int())
	case features.TypeFloat:
		return v.Float()
	}
	return nil
}

// waitForReference looks up everything until serve answers what the engine
// computes (ingest and the replica catch up meanwhile), and fails with the
// differences if it does not within the timeout.
func waitForReference(t *testing.T, base string, defs *features.Definitions, ref ingesttest.Ref) lookupResponse {
	t.Helper()
	body, users, merchants := everything(defs)
	var diffs []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r := lookup(t, base, body)
		if diffs = diffFromReference(t, defs, ref, r, users, merchants); len(diffs) == 0 {
			return r
		}
	}
	t.Fatalf("%d values differ from the engine's after 30s, like:\n%s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	return lookupResponse{}
}

// recentStream is a stream whose events end a few minutes ago, so that
// every window holds something when serve evaluates it now.
func recentStream(n int) []ingesttest.Txn {
	return ingesttest.StreamFrom(11, n, time.Now().Add(-time.Duration(n)*2*time.Second-3*time.Minute))
}

// TestKcatToServe: kcat → local broker → ingest → changelog → serve (a
// Pebble replica) → HTTP. Every value equals the engine's at as_of. A
// second replica started later bootstraps from the changelog and answers
// the same.
func TestKcatToServe(t *testing.T) {
	brokers := startBroker(t)
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)
	base, _ := startServe(t, brokers, t.TempDir()) // before ingest: it waits for the changelogs
	kcatProduce(t, brokers, txns)
	startIngest(t, brokers, t.TempDir())
	waitReady(t, base)
	first := waitForReference(t, base, defs, ref)

	// The second replica's metrics are on a port of their own.
	metricsPort := freeport.Get(t)
	second, _ := startServe(t, brokers, t.TempDir(), "--metrics-addr", "127.0.0.1:"+strconv.Itoa(metricsPort))
	waitReady(t, second)
	body, _, _ := everything(defs)
	for attempt := 0; ; attempt++ {
		a, b := lookup(t, base, body), lookup(t, second, body)
		// Equal as_of minutes: the same 1-minute tiles, the same values.
		if a.Metadata.AsOf[:16] != b.Metadata.AsOf[:16] && attempt < 3 {
			continue
		}
		a.Metadata.AsOf, b.Metadata.AsOf = "", ""
		if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
			t.Fatalf("the second replica answers differently:\n%s\n%s", ja, jb)
		}
		break
	}
	if len(first.Results) != 2+len(defs.View("user_txn", 1).Features)+len(defs.View("merchant_txn", 1).Features) {
		t.Fatalf("%d results", len(first.Results))
	}
	if n := metric(t, metricsPort, "quiver_serve_entity_lookups_total"); n == 0 {
		t.Error("the second replica's --metrics-addr counts no lookups")
	}
	resp, err := http.Get(second + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API of a serve with --metrics-addr: %s, want 404", resp.Status)
	}
}

// TestKcatToServeRedis is the same path with Redis as the online store.
func TestKcatToServeRedis(t *testing.T) {
	brokers := startBroker(t)
	redisAddr := ingesttest.StartRedis(t)
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)
	kcatProduce(t, brokers, txns)
	startIngest(t, brokers, t.TempDir(), "--online", "redis", "--redis-addr", redisAddr)
	base, _ := startServe(t, brokers, t.TempDir(), "--online", "redis", "--redis-addr", redisAddr)
	waitReady(t, base)
	waitForReference(t, base, defs, ref)
}

// TestServeRedisReadyOnceSeeded: serve on a Redis that lacks states (a
// deployment moved to Redis: ingest computed them without it) is not ready
// until ingest has written them all, and once ready its first answer is
// the engine's, not entities without events.
func TestServeRedisReadyOnceSeeded(t *testing.T) {
	brokers := startBroker(t)
	redisAddr := ingesttest.StartRedis(t)
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)
	kcatProduce(t, brokers, txns)
	dataDir := t.TempDir()
	in := startIngest(t, brokers, dataDir)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest exited with %v after SIGTERM", err)
	}

	base, _ := startServe(t, brokers, t.TempDir(), "--online", "redis", "--redis-addr", redisAddr)
	unready := 0
	for deadline := time.Now().Add(30 * time.Second); unready < 5; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve answered /readyz 503 %d times in 30s, want 5", unready)
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			continue // not listening yet
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not seeded") {
			t.Fatalf("/readyz on a Redis ingest has not filled: %d %s, want 503 not seeded", resp.StatusCode, body)
		}
		unready++
	}
	startIngest(t, brokers, dataDir, "--online", "redis", "--redis-addr", redisAddr)
	waitReady(t, base)
	body, users, merchants := everything(defs)
	if diffs := diffFromReference(t, defs, ref, lookup(t, base, body), users, merchants); len(diffs) > 0 {
		t.Fatalf("%d values differ from the engine's once ready, like:\n%s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}

// TestStartBeforeKafkaAndRedis: ingest and serve started before Kafka and
// Redis (a Helm release's pods start in any order) keep running, not
// ready, and answer the engine's values once both are up.
func TestStartBeforeKafkaAndRedis(t *testing.T) {
	port := freeport.Get(t)
	brokers := []string{"127.0.0.1:" + strconv.Itoa(port)}
	redisServer := ingesttest.StartRedisServer(t)
	redisServer.Kill()
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)

	metrics := "http://127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	in := startIngest(t, brokers, t.TempDir(), "--online", "redis", "--redis-addr", redisServer.Addr, "--metrics-addr", strings.TrimPrefix(metrics, "http://"))
	base, sv := startServe(t, brokers, t.TempDir(), "--online", "redis", "--redis-addr", redisServer.Addr)
	// wantUnready waits until url answers 503 with says in its body.
	wantUnready := func(url, says string) {
		t.Helper()
		last := ""
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for _, p := range []*proc{in, sv} {
				select {
				case err := <-p.done:
					p.done <- err // for the cleanup
					t.Fatalf("%s exited (%v) before %s", filepath.Base(p.cmd.Path), err, says)
				default:
				}
			}
			resp, err := http.Get(url)
			if err != nil {
				last = err.Error()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = fmt.Sprintf("%d %s", resp.StatusCode, body); resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("%s: %s; want 503 %s", url, last, says)
			}
			if strings.Contains(string(body), says) {
				return
			}
		}
		t.Fatalf("%s: %s after 30s; want 503 %s", url, last, says)
	}
	wantUnready(metrics+"/readyz", "waiting for Kafka")
	wantUnready(base+"/readyz", "redis")
	time.Sleep(2 * time.Second) // still waiting, still running
	wantUnready(metrics+"/readyz", "waiting for Kafka")

	startBrokerAt(t, port)
	wantUnready(metrics+"/readyz", "waiting for Redis")
	redisServer.Restart()
	kcatProduce(t, brokers, txns)
	waitReady(t, base)
	waitForReference(t, base, defs, ref)
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExpiredIsNotFound: a user whose latest event is older than the view's
// TTL (720h) is OUTSIDE_MAX_AGE until ingest deletes its state
// (--expire-interval), and NOT_FOUND from then on, in a Pebble replica as
// in Redis; a user with a recent event stays PRESENT.
func TestExpiredIsNotFound(t *testing.T) {
	brokers := startBroker(t)
	at := func(d time.Duration) string { return time.Now().Add(-d).UTC().Format(time.RFC3339Nano) }
	kcatProduce(t, brokers, []ingesttest.Txn{
		{Key: "gone", Value: `{"txn_id":"t1","user_id":"gone","merchant_id":"m1","amount":5,"country":"DE","ts":"` + at(31*24*time.Hour) + `"}`},
		{Key: "kept", Value: `{"txn_id":"t2","user_id":"kept","merchant_id":"m1","amount":5,"country":"DE","ts":"` + at(time.Minute) + `"}`},
	})
	base, _ := startServe(t, brokers, t.TempDir())
	startIngest(t, brokers, t.TempDir(), "--expire-interval", "200ms")
	waitReady(t, base)
	body := []byte(`{"features":["user_txn@1:txn_count_1h"],"entities":{"user_id":["gone","kept"]}}`)
	var got []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = lookup(t, base, body).Results[1].Statuses; strings.Join(got, " ") == "NOT_FOUND PRESENT" {
			return
		}
	}
	t.Fatalf("statuses %q, want NOT_FOUND for gone and PRESENT for kept", got)
}
