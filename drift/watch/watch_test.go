package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
)

const window = 500

// repository writes a model repository with one version of model fraud,
// watched with windows of 500 predictions, and returns it with its
// definitions and profile (that of the fraud demo, with an output).
func repository(t *testing.T) (string, *features.Definitions, *drift.Profile) {
	t.Helper()
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prof, err := drift.LoadProfile("../../examples/fraud/models/fraud/1/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	prof.Output = &drift.FeatureProfile{Name: "probability", Type: "float", Count: 1000,
		Edges: []float64{0.01, 0.05, 0.2}, Counts: []int{700, 200, 80, 20}}
	dir := t.TempDir()
	vdir := filepath.Join(dir, "fraud", "1")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := drift.WriteProfile(filepath.Join(vdir, "profile.json"), *prof); err != nil {
		t.Fatal(err)
	}
	spec := `format: xgboost-json
artifact: model.json
inputs: {feature_service: fraud_v1}
profile: profile.json
drift:
  window: 500
  min_samples: 400
  psi: 0.25
  consecutive: 3
  cooldown: 20m
`
	if err := os.WriteFile(filepath.Join(vdir, "model.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, defs, prof
}

// sampler draws predictions from a profile: a bin by its reference share,
// then a value inside it.
type sampler struct {
	r       *rand.Rand
	columns []drift.FeatureProfile // inputs, then the output
	shifted map[int]bool           // columns whose values all go to their last value bin
}

func (s *sampler) value(i int) float32 {
	fp := s.columns[i]
	if s.shifted[i] {
		return float32(fp.Edges[len(fp.Edges)-1] * 3)
	}
	u := s.r.IntN(fp.Count + fp.Nulls)
	if u >= fp.Count {
		return float32(math.NaN())
	}
	b := 0
	for u >= fp.Counts[b] {
		u -= fp.Counts[b]
		b++
	}
	if b == 0 {
		return float32(fp.Edges[0] - 1)
	}
	return float32(fp.Edges[b-1]) // an edge opens its bin
}

func (s *sampler) prediction(at time.Time) drift.Prediction {
	in := make([]float32, len(s.columns)-1)
	for i := range in {
		in[i] = s.value(i)
	}
	return drift.Prediction{RequestID: ksuid.New().String(), Model: "fraud", Version: 1,
		Inputs: drift.Numbers(in), Output: []float32{s.value(len(in))}, Time: at}
}

func produce(t *testing.T, cl *kgo.Client, ps []drift.Prediction) {
	t.Helper()
	recs := make([]*kgo.Record, len(ps))
	for i, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: "quiver.predictions", Key: []byte(p.Model), Value: b}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestDriftEvents: a stable stream of 200 windows sends nothing; a drift
// sends one event within the configured 3 windows; a second drift inside
// the cooldown sends nothing; one after it sends one more. Events are valid
// CloudEvents, read back by kcat, and reach a webhook, signed, despite its
// first failure.
func TestDriftEvents(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	dir, defs, prof := repository(t)

	var hookMu sync.Mutex
	var hooked [][]byte
	calls := 0
	secret := []byte("s3cret")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		defer hookMu.Unlock()
		calls++
		if calls == 1 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get(SignatureHeader) != Sign(secret, body) || r.Header.Get("Content-Type") != drift.ContentType {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		hooked = append(hooked, body)
	}))
	defer hook.Close()

	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Config{Brokers: brokers, Models: dir, Definitions: defs, Registerer: reg, CommitInterval: 100 * time.Millisecond,
		Webhook: &Webhook{URL: hook.URL, Secret: secret, Backoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("quiver.predictions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s := &sampler{r: rand.New(rand.NewPCG(7, 8)), columns: append(slices.Clone(prof.Features), *prof.Output)}
	amountVsAvg := slices.IndexFunc(prof.Features, func(f drift.FeatureProfile) bool { return f.Name == "amount_vs_avg" })
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	windows := func(k int, shifted bool) {
		s.shifted = map[int]bool{amountVsAvg: shifted}
		ps := make([]drift.Prediction, k*window)
		for i := range ps {
			ps[i] = s.prediction(at)
			at = at.Add(10 * time.Millisecond) // a window is 5s of prediction time
		}
		produce(t, cl, ps)
		n += len(ps)
	}
	processed := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if testutil.ToFloat64(m.m.predictions.WithLabelValues("fraud", "1")) == float64(n) {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the monitor stopped: %v", err)
		default:
		}
		t.Fatalf("processed %v of %d predictions", testutil.ToFloat64(m.m.predictions.WithLabelValues("fraud", "1")), n)
	}
	events := func() float64 { return testutil.ToFloat64(m.m.events.WithLabelValues("fraud")) }

	windows(200, false)
	processed()
	if got := testutil.ToFloat64(m.m.windows.WithLabelValues("fraud", "1")); got != 200 {
		t.Fatalf("%v windows evaluated, want 200", got)
	}
	if e, b := events(), testutil.ToFloat64(m.m.breaches.WithLabelValues("fraud", "1")); e != 0 || b > 2 {
		t.Fatalf("stable stream: %v events, %v breaching windows", e, b)
	}

	windows(3, true) // the drift: one event at the end of its third window
	processed()
	if e := events(); e != 1 {
		select {
		case err := <-done:
			t.Fatalf("the monitor stopped: %v", err)
		default:
		}
		t.Fatalf("%v events after a drift of 3 windows, want 1 (%v windows, %v breaching)", e, testutil.ToFloat64(m.m.windows.WithLabelValues("fraud", "1")), testutil.ToFloat64(m.m.breaches.WithLabelValues("fraud", "1")))
	}
	firstEnd := at.Add(-10 * time.Millisecond)
	windows(5, true) // it goes on: breaches, no event
	windows(10, false)
	windows(5, true) // a second drift, inside the cooldown
	processed()
	if e, s := events(), testutil.ToFloat64(m.m.suppressed.WithLabelValues("fraud")); e != 1 || s == 0 {
		t.Fatalf("inside the cooldown: %v events, %v suppressed; want 1 and some", e, s)
	}
	at = at.Add(20 * time.Minute)
	windows(5, true) // after the cooldown: one more
	processed()
	if e := events(); e != 2 {
		t.Fatalf("%v events after the cooldown, want 2", e)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// kcat, a third-party client, reads the events: CloudEvents 1.0
	// structured JSON, with the content-type header of the Kafka binding.
	out, err := exec.Command("kcat", "-C", "-b", brokers[0], "-t", "quiver.retrain", "-o", "beginning", "-e", "-q",
		"-f", "%k\t%h\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("kcat read %d events, want 2:\n%s", len(lines), out)
	}
	var bodies [][]byte
	for i, line := range lines {
		key, rest, _ := strings.Cut(line, "\t")
		headers, body, _ := strings.Cut(rest, "\t")
		if key != "fraud" || headers != "content-type="+drift.ContentType {
			t.Errorf("event %d: key %q, headers %q", i, key, headers)
		}
		bodies = append(bodies, []byte(body))
		var e event.Event
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("event %d is not a CloudEvent: %v\n%s", i, err, body)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("event %d: %v", i, err)
		}
		var raw map[string]any
		json.Unmarshal([]byte(body), &raw)
		if raw["specversion"] != "1.0" || raw["type"] != drift.RetrainType || raw["datacontenttype"] != "application/json" || raw["source"] != "/quiver/drift" {
			t.Errorf("event %d attributes: %v", i, raw)
		}
		if _, err := ksuid.Parse(e.ID()); err != nil {
			t.Errorf("event %d id %q is not a KSUID: %v", i, e.ID(), err)
		}
		var r drift.Retrain
		if err := e.DataAs(&r); err != nil {
			t.Fatal(err)
		}
		if r.Model != "fraud" || r.Version != 1 || r.Window.Predictions != window || r.Window.Consecutive < 3 ||
			len(r.Drifted) == 0 || !slices.ContainsFunc(r.Drifted, func(s drift.Score) bool { return s.Feature == "amount_vs_avg" && s.PSI >= 0.25 }) {
			t.Errorf("event %d data: %+v", i, r)
		}
		if i == 0 && (!r.Window.End.Equal(firstEnd) || r.Window.Consecutive != 3) {
			t.Errorf("first event: window ends %v after %d breaching windows, want %v after 3 (the drift's third window)", r.Window.End, r.Window.Consecutive, firstEnd)
		}
	}

	hookMu.Lock()
	defer hookMu.Unlock()
	if len(hooked) != 2 || !bytes.Equal(hooked[0], bodies[0]) || !bytes.Equal(hooked[1], bodies[1]) {
		t.Errorf("webhook got %d events (after %d calls), want the 2 of the topic", len(hooked), calls)
	}
}
