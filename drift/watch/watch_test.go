package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/drift/drifttest"
	"github.com/quiver-ml/quiver/features"
)

const window = 500

// cluster starts a broker for the test.
func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

const watchYAML = `  window: 500
  min_samples: 400
  psi: 0.25
  consecutive: 3
  cooldown: 20m
`

// TestDriftEvents: a stable stream of 200 windows sends nothing; a drift
// sends one event within the configured 3 windows; a second drift inside
// the cooldown sends nothing; one after it sends one more. Events are valid
// CloudEvents, read back by kcat, and reach a webhook, signed, despite its
// first failure.
func TestDriftEvents(t *testing.T) {
	brokers := cluster(t)
	dir, defs, prof := drifttest.Repository(t, watchYAML)

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
	s := drifttest.NewSampler(prof, 7)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	windows := func(k int, shifted bool) {
		s.Shift("amount_vs_avg", shifted)
		drifttest.Produce(t, cl, "quiver.predictions", s.Predictions(k*window, &at, 10*time.Millisecond)) // a window: 5s
		n += k * window
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

	// A prediction whose time is far from its record's is not counted.
	bad := s.Predictions(1, &at, 0)
	bad[0].Time = bad[0].Time.Add(24 * time.Hour)
	b, _ := json.Marshal(bad[0])
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "quiver.predictions", Key: []byte("fraud"), Value: b, Timestamp: at}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(m.m.skipped.WithLabelValues("time")) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a prediction from a wrong clock was not skipped")
		}
	}
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
	// The webhook is a second delivery, after the topic's: stopping does
	// not wait for it.
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(m.m.webhook.WithLabelValues("ok")) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v events delivered by the webhook, want 2", testutil.ToFloat64(m.m.webhook.WithLabelValues("ok")))
		}
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

// TestNoCooldown: with cooldown 0, written as 0 or 0s, every sustained
// breach sends its event, however soon after the last: six breaching
// windows, three a breach, send two.
func TestNoCooldown(t *testing.T) {
	for _, zero := range []string{"0", "0s"} {
		t.Run("cooldown "+zero, func(t *testing.T) {
			brokers := cluster(t)
			dir, defs, prof := drifttest.Repository(t, strings.Replace(watchYAML, "cooldown: 20m", "cooldown: "+zero, 1))
			cl := producer(t, brokers)
			s := drifttest.NewSampler(prof, 7)
			s.Shift("amount_vs_avg", true)
			at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			m, _ := runThrough(t, brokers, dir, defs, func() *kgo.Record {
				return drifttest.Produce(t, cl, "quiver.predictions", s.Predictions(6*window, &at, 10*time.Millisecond))
			})
			if e, s := testutil.ToFloat64(m.m.events.WithLabelValues("fraud")), testutil.ToFloat64(m.m.suppressed.WithLabelValues("fraud")); e != 2 || s != 0 {
				t.Errorf("%v events, %v suppressed, after six breaching windows; want 2 and none", e, s)
			}
		})
	}
}

// TestTimeWindowScoredAtItsEnd: a breaching time window is scored, and
// its retraining event sent, once it ends and LateWait has passed, though
// no later prediction comes to close it.
func TestTimeWindowScoredAtItsEnd(t *testing.T) {
	brokers := cluster(t)
	dir, defs, prof := drifttest.Repository(t, "  window: 2s\n  min_samples: 100\n  psi: 0.25\n  consecutive: 1\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Config{Brokers: brokers, Models: dir, Definitions: defs, CommitInterval: 100 * time.Millisecond, LateWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	s := drifttest.NewSampler(prof, 7)
	s.Shift("amount_vs_avg", true)
	start := time.Now().Truncate(2 * time.Second)
	at := start
	drifttest.Produce(t, producer(t, brokers), "quiver.predictions", s.Predictions(200, &at, 5*time.Millisecond)) // [start, start+1s)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m.mu.Lock()
		last := m.sent["fraud"]
		m.mu.Unlock()
		if !last.end.IsZero() {
			if want := start.Add(2 * time.Second); !last.end.Equal(want) {
				t.Fatalf("retraining event for the window ending %v, want %v", last.end, want)
			}
			if took := time.Since(last.end); took > 10*time.Second {
				t.Errorf("the event came %v after the window's end, want within LateWait and a poll", took)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no retraining event 30 s after the window's last prediction")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBreachSurvivesRestart: a breach two windows into its three, when
// ingest restarts (or the model's partition moves to another instance),
// still sends its event at the end of the third window; and the restart
// after that event does not send it again.
func TestBreachSurvivesRestart(t *testing.T) {
	brokers := cluster(t)
	dir, defs, prof := drifttest.Repository(t, watchYAML)
	cl := producer(t, brokers)

	s := drifttest.NewSampler(prof, 7)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	run := func(k int, shifted bool) float64 {
		t.Helper()
		m, _ := runThrough(t, brokers, dir, defs, func() *kgo.Record {
			s.Shift("amount_vs_avg", shifted)
			return drifttest.Produce(t, cl, "quiver.predictions", s.Predictions(k*window, &at, 10*time.Millisecond))
		})
		return testutil.ToFloat64(m.m.events.WithLabelValues("fraud"))
	}
	if e := run(1, false); e != 0 {
		t.Fatalf("%v events for a stable window", e)
	}
	if e := run(2, true); e != 0 {
		t.Fatalf("%v events after 2 breaching windows of 3", e)
	}
	if e := run(1, true); e != 1 {
		t.Fatalf("%v events after a restart and the third breaching window, want 1", e)
	}
	if e := run(1, false); e != 0 {
		t.Fatalf("%v events after a restart past the event, want none", e)
	}
}

// producer returns a client of the brokers for the test.
func producer(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// runThrough starts a monitor, calls produce, waits until the monitor has
// processed the record produce returns, and stops it. It also returns where
// each watched version's windows began then.
func runThrough(t *testing.T, brokers []string, dir string, defs *features.Definitions, produce func() *kgo.Record) (*Monitor, map[version]int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Config{Brokers: brokers, Models: dir, Definitions: defs, CommitInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	last := produce()
	from := map[version]int64{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m.mu.Lock()
		next := m.next[last.Partition]
		if next == last.Offset+1 {
			for v, w := range m.versions {
				if w.det != nil {
					from[v] = w.det.From()
				}
			}
		}
		m.mu.Unlock()
		if next == last.Offset+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor did not reach the end of the log")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return m, from
}

// TestRestartKeepsEachVersionsWindows: a canary's prediction in the middle
// of the production version's first window holds the committed offset back
// while the canary's window is open. A restart must not evaluate the
// production version's windows again from there, each shifted by half a
// window: its windows were stable, breaching, breaching, stable, breaching,
// breaching, and the shifted ones breach three in a row.
func TestRestartKeepsEachVersionsWindows(t *testing.T) {
	brokers := cluster(t)
	dir, defs, prof := drifttest.Repository(t, watchYAML)
	if err := os.CopyFS(filepath.Join(dir, "fraud", "2"), os.DirFS(filepath.Join(dir, "fraud", "1"))); err != nil {
		t.Fatal(err)
	}
	cl := producer(t, brokers)
	s := drifttest.NewSampler(prof, 7)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var ps []drift.Prediction
	add := func(n int, shifted bool) {
		s.Shift("amount_vs_avg", shifted)
		ps = append(ps, s.Predictions(n, &at, 10*time.Millisecond)...)
	}
	add(window/2, false)
	add(1, false)
	ps[len(ps)-1].Version = 2 // the canary's
	add(window/2, false)
	add(2*window, true)
	add(window, false)
	add(2*window, true)
	add(window/5, false) // open
	var last *kgo.Record
	first, before := runThrough(t, brokers, dir, defs, func() *kgo.Record {
		last = drifttest.Produce(t, cl, "quiver.predictions", ps)
		return last
	})
	if e := testutil.ToFloat64(first.m.events.WithLabelValues("fraud")); e != 0 {
		t.Fatalf("%v events for no three breaching windows in a row", e)
	}
	again, after := runThrough(t, brokers, dir, defs, func() *kgo.Record { return last })
	if e := testutil.ToFloat64(again.m.events.WithLabelValues("fraud")); e != 0 {
		t.Errorf("%v events after a restart", e)
	}
	if !maps.Equal(after, before) {
		t.Errorf("after a restart, the versions' windows begin at offsets %v; before, at %v", after, before)
	}
}

// TestReplayedBreachSendsOnce: ingest that stops after sending a breach's
// event and before committing replays the breaching windows on restart,
// with the event read back from the retrain topic. With no cooldown, the
// replay must send what a run without the stop would have sent after the
// event: nothing for the fourth breaching window, one event at the sixth.
func TestReplayedBreachSendsOnce(t *testing.T) {
	brokers := cluster(t)
	dir, defs, prof := drifttest.Repository(t, strings.Replace(watchYAML, "cooldown: 20m", "cooldown: 0", 1))
	s := drifttest.NewSampler(prof, 7)
	s.Shift("amount_vs_avg", true)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ps := s.Predictions(6*window, &at, 10*time.Millisecond)
	// run processes the six breaching windows from the first and returns
	// the ends of the windows it sent events for.
	run := func(last map[string]sent) []time.Time {
		t.Helper()
		m, err := New(context.Background(), Config{Brokers: brokers, Models: dir, Definitions: defs})
		if err != nil {
			t.Fatal(err)
		}
		defer m.client.Close()
		maps.Copy(m.sent, last)
		var ends []time.Time
		for i, p := range ps {
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			before := m.sent["fraud"].end
			if err := m.process(context.Background(), &kgo.Record{Topic: "quiver.predictions", Offset: int64(i), Value: b, Timestamp: p.Time}); err != nil {
				t.Fatal(err)
			}
			if end := m.sent["fraud"].end; !end.Equal(before) {
				ends = append(ends, end)
			}
		}
		return ends
	}
	whole := run(nil)
	if len(whole) != 2 {
		t.Fatalf("events for windows ending %v; want two, for the third and the sixth", whole)
	}
	if replayed := run(map[string]sent{"fraud": {1, whole[0]}}); !slices.EqualFunc(replayed, whole[1:], time.Time.Equal) {
		t.Errorf("after the first event, a replay sent events for windows ending %v; want %v", replayed, whole[1:])
	}
}

// TestRunJoinsTheGroup: New joins no group, so no rebalance can call back
// into a monitor it has yet to finish; Run joins it.
func TestRunJoinsTheGroup(t *testing.T) {
	brokers := cluster(t)
	dir, defs, _ := drifttest.Repository(t, watchYAML)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := New(ctx, Config{Brokers: brokers, Models: dir, Definitions: defs, GroupID: "drift"})
	if err != nil {
		t.Fatal(err)
	}
	cl := producer(t, brokers)
	adm := kadm.NewClient(cl)
	members := func() int {
		t.Helper()
		groups, err := adm.DescribeGroups(ctx, "drift")
		if err != nil {
			t.Fatal(err)
		}
		return len(groups["drift"].Members)
	}
	time.Sleep(time.Second) // a joining client is a member within milliseconds
	if n := members(); n != 0 {
		t.Fatalf("%d members after New, want none before Run", n)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); members() != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not join the group")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWebhookErrorsHideSecrets: a failed delivery's error names the
// webhook's scheme and host, not the user information, path or query
// that may hold its secret.
func TestWebhookErrorsHideSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close() // nothing listens there any more
	for _, base := range []string{srv.URL, refused.URL} {
		u, _ := url.Parse(base)
		u.User = url.UserPassword("hookuser", "hookpass")
		u.Path, u.RawQuery = "/services/T0/B0/SECRETPATH", "token=qtok"
		w := &Webhook{URL: u.String(), Attempts: 1}
		err := w.post(context.Background(), []byte("{}"))
		if err == nil {
			t.Fatalf("a delivery to %s succeeded", base)
		}
		for _, secret := range []string{"hookuser", "hookpass", "SECRETPATH", "qtok"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows %s", err, secret)
			}
		}
		if !strings.Contains(err.Error(), "http://"+u.Host+"/…") {
			t.Errorf("error %q does not name the webhook's host", err)
		}
	}
}
