package watch

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/drift/drifttest"
)

// fuzzYAML scores windows of two predictions, sliding by one, and makes a
// breach of one window sustained: a record processed three times is
// scored twice, and may ask for an event.
const fuzzYAML = `  window: 2
  slide: 1
  min_samples: 1
  consecutive: 1
`

// FuzzProcess runs arbitrary bytes, as a record of the prediction log
// produced at a given millisecond, three times through the monitor's
// process, without Kafka: the monitor watches version 1 of model fraud,
// which is cooling down from an event, so that a breach sends nothing.
// Each record is counted once, as skipped or as a prediction of the one
// watched version, which is then scored twice, with PSI and JS in range;
// nothing fails and no other version is watched. Where
// encoding/json, which serve logs predictions with, reads a record of valid
// UTF-8 too, it reads what go-json does. Its seeds are predictions of the fraud sampler.
func FuzzProcess(f *testing.F) {
	dir, defs, prof := drifttest.Repository(f, fuzzYAML)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ps := drifttest.NewSampler(prof, 1).Predictions(3, &at, time.Second)
	ps[1].Inputs[0], ps[1].Output[0] = drift.Number(math.NaN()), drift.Number(math.NaN()) // nulls
	ps[2].Inputs = ps[2].Inputs[:3]                                                       // too few inputs
	for _, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, p.Time.UnixMilli())
	}
	f.Add([]byte(`{"model":"fraud","version":2,"inputs":[],"output":[1],"time":"2026-11-01T00:00:00Z"}`), at.UnixMilli())
	f.Add([]byte(`{"model":"fraud","version":1,"output":[0.5],"time":"2026-11-01T00:00:00Z"}`), at.UnixMilli()+61_000)
	f.Fuzz(func(t *testing.T, value []byte, ms int64) {
		var std, goj drift.Prediction
		// encoding/json writes valid UTF-8 only; go-json keeps invalid
		// bytes where encoding/json reads U+FFFD.
		if utf8.Valid(value) && gojson.Unmarshal(value, &goj) == nil && json.Unmarshal(value, &std) == nil && !samePrediction(goj, std) {
			t.Fatalf("go-json reads %+v, encoding/json %+v", goj, std)
		}

		mt, err := newMetrics(nil)
		if err != nil {
			t.Fatal(err)
		}
		m := &Monitor{cfg: Config{Models: dir, Definitions: defs}, log: slog.New(slog.DiscardHandler), m: mt,
			versions: map[version]*watched{}, next: map[int32]int64{},
			sent: map[string]sent{"fraud": {1, time.Unix(1<<62, 0)}}}
		counted := func() float64 {
			n := testutil.ToFloat64(mt.predictions.WithLabelValues("fraud", "1"))
			for _, r := range []string{"invalid", "time", "unwatched"} {
				n += testutil.ToFloat64(mt.skipped.WithLabelValues(r))
			}
			return n
		}
		for off := range int64(3) {
			r := &kgo.Record{Topic: "quiver.predictions", Partition: 2, Offset: off, Value: value, Timestamp: time.UnixMilli(ms)}
			if err := m.process(context.Background(), r); err != nil {
				t.Fatalf("record %d: %v", off, err)
			}
			if m.next[2] != off+1 {
				t.Fatalf("after record %d the partition's next offset is %d", off, m.next[2])
			}
			if n := counted(); n != float64(off+1) {
				t.Fatalf("%v records counted after %d", n, off+1)
			}
		}
		for v, w := range m.versions {
			if w.det != nil && v != (version{"fraud", 1}) {
				t.Fatalf("watching %s: only fraud@1 is in the repository", v)
			}
		}
		if testutil.ToFloat64(mt.predictions.WithLabelValues("fraud", "1")) == 0 {
			return
		}
		if got := testutil.ToFloat64(mt.windows.WithLabelValues("fraud", "1")); got != 2 {
			t.Fatalf("%v windows scored after 3 predictions, want 2", got)
		}
		for _, col := range m.versions[version{"fraud", 1}].det.Columns() {
			psi := testutil.ToFloat64(mt.score.WithLabelValues("fraud", "1", col, "psi"))
			js := testutil.ToFloat64(mt.score.WithLabelValues("fraud", "1", col, "js"))
			if !(psi >= 0 && psi <= drift.MaxPSI+1e-12 && js >= 0 && js <= 1+1e-12) {
				t.Fatalf("%s: PSI %g, JS %g", col, psi, js)
			}
		}
	})
}

// samePrediction says whether a and b are the same prediction, numbers
// bit for bit.
func samePrediction(a, b drift.Prediction) bool {
	bits := func(x, y drift.Number) bool { return math.Float32bits(float32(x)) == math.Float32bits(float32(y)) }
	return a.RequestID == b.RequestID && a.Row == b.Row && a.Model == b.Model && a.Version == b.Version &&
		a.Shadow == b.Shadow && a.Time.Equal(b.Time) &&
		slices.EqualFunc(a.Inputs, b.Inputs, bits) && slices.EqualFunc(a.Output, b.Output, bits)
}

// TestPrune: records naming versions that do not exist leave nothing behind
// once they are due to be looked at again; a watched version stays while it
// has predictions.
func TestPrune(t *testing.T) {
	dir, defs, _ := drifttest.Repository(t, fuzzYAML)
	mt, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &Monitor{cfg: Config{Models: dir, Definitions: defs}, log: slog.New(slog.DiscardHandler), m: mt, versions: map[version]*watched{}}
	for i := range 100 {
		m.watch(version{"nope", i + 1}, 0)
	}
	w := m.watch(version{"fraud", 1}, 0)
	w.seen = time.Now()
	if w.det == nil || len(m.versions) != 101 {
		t.Fatalf("%d versions, fraud@1 watched: %v", len(m.versions), w.det != nil)
	}
	m.prune()
	if len(m.versions) != 101 {
		t.Fatalf("%d versions after a prune before any is due, want 101", len(m.versions))
	}
	for _, w := range m.versions {
		w.retryAt = time.Now().Add(-time.Second)
	}
	m.prune()
	if len(m.versions) != 1 || m.versions[version{"fraud", 1}] != w {
		t.Fatalf("%d versions after the retries were due, want fraud@1 alone", len(m.versions))
	}
}

// TestIdleTimeWindowKept: a version watched over a time window longer than
// idleVersion is kept while its last prediction is in the window, so that
// sparse predictions still fill windows; it is forgotten after.
func TestIdleTimeWindowKept(t *testing.T) {
	dir, defs, _ := drifttest.Repository(t, "  window: 1h\n  slide: 30m\n")
	mt, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &Monitor{cfg: Config{Models: dir, Definitions: defs, LateWait: time.Second}, log: slog.New(slog.DiscardHandler), m: mt, versions: map[version]*watched{}}
	v := version{"fraud", 1}
	w := m.watch(v, 0)
	if w.det == nil {
		t.Fatal("fraud@1 not watched")
	}
	for _, tc := range []struct {
		idle time.Duration
		kept bool
	}{{idleVersion + time.Minute, true}, {90 * time.Minute, true}, {90*time.Minute + 2*time.Second, false}} {
		w.seen = time.Now().Add(-tc.idle)
		m.prune()
		if kept := m.versions[v] != nil; kept != tc.kept {
			t.Errorf("idle for %v: kept %v, want %v", tc.idle, kept, tc.kept)
		}
	}
}

// TestForgetDeletesSeries: a version forgotten, idle or on a partition
// another owner took over, leaves no series of its own behind: its
// counters go with its scores, and start again at zero if it comes back.
func TestForgetDeletesSeries(t *testing.T) {
	dir, defs, prof := drifttest.Repository(t, fuzzYAML)
	mt, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &Monitor{cfg: Config{Models: dir, Definitions: defs}, log: slog.New(slog.DiscardHandler), m: mt,
		versions: map[version]*watched{}, next: map[int32]int64{},
		sent: map[string]sent{"fraud": {1, time.Unix(1<<62, 0)}}} // cooling down: a breach sends nothing
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	predict := func() {
		t.Helper()
		for i, p := range drifttest.NewSampler(prof, 1).Predictions(3, &at, time.Second) {
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Topic: "quiver.predictions", Partition: 2, Offset: int64(i), Value: b, Timestamp: p.Time}
			if err := m.process(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	series := func() map[string]int {
		return map[string]int{"score": testutil.CollectAndCount(mt.score), "windows": testutil.CollectAndCount(mt.windows),
			"breaches": testutil.CollectAndCount(mt.breaches), "predictions": testutil.CollectAndCount(mt.predictions)}
	}
	for _, gone := range []struct {
		how    string
		forget func()
	}{
		{"idle", func() { m.versions[version{"fraud", 1}].seen = time.Now().Add(-idleVersion - time.Second); m.prune() }},
		{"partition revoked", func() { m.drop([]int32{2}) }},
	} {
		predict()
		for name, n := range series() {
			if n == 0 {
				t.Fatalf("no %s series of a watched version", name)
			}
		}
		gone.forget()
		if len(m.versions) != 0 {
			t.Fatalf("%s: %d versions still watched", gone.how, len(m.versions))
		}
		for name, n := range series() {
			if n != 0 {
				t.Errorf("%s: %d %s series left of a version forgotten", gone.how, n, name)
			}
		}
	}
}

// TestCountersStartAtZero: the counters of a fixed set of labels exist at
// zero before the first count, which increase() would not see otherwise.
func TestCountersStartAtZero(t *testing.T) {
	mt, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]prometheus.Collector{"skipped": mt.skipped, "webhook": mt.webhook} {
		if n := testutil.CollectAndCount(c); n != 3 {
			t.Errorf("%s: %d series, want one per reason or result (3)", name, n)
		}
	}
}
