package features_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// Benchmarks for the fraud example. The workload is a week of card
// transactions, spread evenly in time over the users and in time order, as
// ingest sees them: each user buys from about 20 regular merchants out of
// 1,000, mostly in one of four countries.
//
// "baseline" is a view with one lifetime count and no filter: the cost of the
// harness itself (finding the state, walking the events), the ceiling the
// real views are compared with.

const baselineDefs = `project: bench
entities: [{name: user, join_keys: [user_id]}]
sources:
  - name: transactions
    topic: transactions
    event_time: ts
    schema: {txn_id: string, user_id: string, merchant_id: string, amount: float, country: string, ts: timestamp}
feature_views:
  - {name: baseline, version: 1, entity: user, source: transactions, features: [{name: n, agg: count}]}
`

type workload struct {
	engine *features.Engine
	events []features.Event
	slots  []int // the entity each event belongs to, numbered from 0
	keys   int
}

func loadView(tb testing.TB, view string) (*features.Definitions, *features.View) {
	tb.Helper()
	var defs *features.Definitions
	var err error
	if view == "baseline" {
		defs, err = features.Parse("baseline.yaml", []byte(baselineDefs))
	} else {
		defs, err = features.Load("../examples/fraud/definitions.yaml")
	}
	if err != nil {
		tb.Fatal(err)
	}
	return defs, defs.View(view, 1)
}

func newWorkload(tb testing.TB, view string, users, perDay int) *workload {
	tb.Helper()
	defs, v := loadView(tb, view)
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		tb.Fatal(err)
	}
	src := defs.Source("transactions")
	key := src.Field(defs.Entity(v.Entity).JoinKeys[0])
	rng := rand.New(rand.NewPCG(1, 2))
	const week = 7 * 24 * 3600 * 1000
	n := users * perDay * 7
	start := int64(1_760_000_000_000)
	countries := []string{"DE", "FR", "US", "GB"}
	w := &workload{engine: eng}
	slot := map[string]int{}
	for i := range n {
		u := rng.IntN(users)
		f := make([]features.Value, len(src.Schema))
		set := func(name string, v features.Value) { f[src.Field(name)] = v }
		ts := start + int64(i)*week/int64(n)
		set("txn_id", features.String(fmt.Sprintf("t%d", i)))
		set("user_id", features.String(fmt.Sprintf("u%06d", u)))
		set("merchant_id", features.String(fmt.Sprintf("m%04d", (u*7+rng.IntN(20))%1000)))
		set("amount", features.Float(float64(rng.IntN(100000))/100))
		set("country", features.String(countries[min(rng.IntN(10), 3)]))
		set("ts", features.Timestamp(ts))
		w.events = append(w.events, features.Event{Time: ts, Partition: int32(u % 8), Offset: int64(i), Fields: f})
		k := f[key].Str()
		if _, ok := slot[k]; !ok {
			slot[k] = len(slot)
		}
		w.slots = append(w.slots, slot[k])
	}
	w.keys = len(slot)
	return w
}

// apply runs the stream into fresh states and returns them.
func (w *workload) apply(tb testing.TB, states []*features.State) []*features.State {
	if states == nil {
		states = make([]*features.State, w.keys)
	}
	clear(states)
	for i := range w.events {
		s := states[w.slots[i]]
		if s == nil {
			s = w.engine.NewState()
			states[w.slots[i]] = s
		}
		if _, err := w.engine.Apply(s, &w.events[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return states
}

// BenchmarkApply measures events applied per second on one core to states
// held in memory. Each pass applies a week of events to fresh states, so
// tiles are created, filled and expired as in ingest. With 1,000 users the
// states do not fit in the CPU caches, as in production; with 10 they do.
func BenchmarkApply(b *testing.B) {
	for _, view := range []string{"baseline", "user_txn", "merchant_txn"} {
		for _, users := range []int{1000, 10} {
			b.Run(fmt.Sprintf("%s/users=%d", view, users), func(b *testing.B) {
				w := newWorkload(b, view, users, 350_000/7/users)
				var states []*features.State
				b.ReportAllocs()
				for b.Loop() {
					states = w.apply(b, states)
				}
				events := float64(b.N * len(w.events))
				b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkEvaluate measures evaluating every feature of one entity's view at
// the end of the week, and reports the encoded state size of such an entity,
// for users with 10, 50 and 200 transactions a day.
func BenchmarkEvaluate(b *testing.B) {
	for _, view := range []string{"baseline", "user_txn"} {
		for _, perDay := range []int{10, 50, 200} {
			b.Run(fmt.Sprintf("%s/%d-per-day", view, perDay), func(b *testing.B) {
				w := newWorkload(b, view, 200, perDay)
				states := w.apply(b, nil)
				now := w.events[len(w.events)-1].Time
				bytes := 0
				for _, s := range states {
					bytes += len(w.engine.AppendState(nil, s))
				}
				out := make([]features.Value, len(w.engine.View().Features))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := w.engine.Evaluate(states[i%len(states)], now, out); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.ReportMetric(float64(bytes)/float64(len(states)), "state-bytes/entity")
			})
		}
	}
}

// BenchmarkStateCodec measures encoding and decoding one user's state (50
// transactions a day), what ingest and serve do when states move between
// memory, disk and the changelog.
func BenchmarkStateCodec(b *testing.B) {
	w := newWorkload(b, "user_txn", 200, 50)
	states := w.apply(b, nil)
	encoded := make([][]byte, len(states))
	for i, s := range states {
		encoded[i] = w.engine.AppendState(nil, s)
	}
	b.Run("encode", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			buf = w.engine.AppendState(buf[:0], states[i%len(states)])
			i++
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := w.engine.DecodeState(encoded[i%len(encoded)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkDecodeJSON measures decoding one fraud transaction from its JSON
// record value, what ingest does for every record before applying it.
func BenchmarkDecodeJSON(b *testing.B) {
	defs, _ := loadView(b, "user_txn")
	src := defs.Source("transactions")
	data := []byte(`{"txn_id":"t000123","user_id":"u000042","merchant_id":"m0317","amount":123.45,"country":"DE","ts":"2026-11-20T09:00:00.250Z"}`)
	var ev features.Event
	b.ReportAllocs()
	for b.Loop() {
		if err := src.DecodeJSON(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvalOnDemand computes the fraud service's on-demand feature for
// one row, as serve does per prediction and backfill per spine row.
func BenchmarkEvalOnDemand(b *testing.B) {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	svc := defs.Service("fraud_v1")
	in := make([]features.Value, len(svc.Features))
	for i := range in {
		in[i] = features.Float(float64(i) + 0.5)
	}
	request := map[string]any{"amount": 42.0}
	out := make([]features.Value, len(svc.OnDemand))
	for b.Loop() {
		if err := svc.EvalOnDemand(in, request, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHotDistinct measures one hot merchant of merchant_txn, with
// 100,000 transactions a day from distinct users: each 24-minute tile of
// users_24h holds a sketch. Each event is applied and then every feature
// evaluated at its time, as ingest does for the feature log's row: 10,000
// events after a day that filled the window.
func BenchmarkHotDistinct(b *testing.B) {
	defs, v := loadView(b, "merchant_txn")
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		b.Fatal(err)
	}
	src := defs.Source("transactions")
	rng := rand.New(rand.NewPCG(3, 4))
	const perDay = 100_000
	start := int64(1_760_000_000_000)
	events := make([]features.Event, perDay+10_000)
	for i := range events {
		f := make([]features.Value, len(src.Schema))
		f[src.Field("user_id")] = features.String(fmt.Sprintf("u%07d", rng.IntN(10_000_000)))
		f[src.Field("merchant_id")] = features.String("m0001")
		f[src.Field("amount")] = features.Float(float64(rng.IntN(100000)) / 100)
		f[src.Field("country")] = features.String("DE")
		ts := start + int64(i)*24*3600*1000/perDay
		f[src.Field("ts")] = features.Timestamp(ts)
		events[i] = features.Event{Time: ts, Offset: int64(i), Fields: f}
	}
	out := make([]features.Value, len(v.Features))
	// The first day fills the window; the second is measured.
	warm := eng.NewState()
	for i := range events[:perDay] {
		if _, err := eng.Apply(warm, &events[i]); err != nil {
			b.Fatal(err)
		}
	}
	record := eng.AppendState(nil, warm)
	measured := events[perDay : perDay+10_000]
	for b.Loop() {
		b.StopTimer()
		s, err := eng.DecodeState(record)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := range measured {
			if _, err := eng.Apply(s, &measured[i]); err != nil {
				b.Fatal(err)
			}
			if err := eng.Evaluate(s, measured[i].Time, out); err != nil {
				b.Fatal(err)
			}
		}
	}
	n := float64(b.N * len(measured))
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
