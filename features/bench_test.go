package features_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// fraudWorkload is the benchmark's stream for the fraud example: users with
// perDay card transactions each, at 20 regular merchants, over a week.
type fraudWorkload struct {
	engine *features.Engine
	events []features.Event
	users  []string
}

func newFraudWorkload(tb testing.TB, view string, users, perDay int) *fraudWorkload {
	tb.Helper()
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return newFraudWorkloadDefs(tb, defs, users, perDay, view)
}

func newFraudWorkloadDefs(tb testing.TB, defs *features.Definitions, users, perDay int, view ...string) *fraudWorkload {
	name := "user_txn"
	if len(view) > 0 {
		name = view[0]
	}
	eng, err := features.NewEngine(defs, defs.View(name, 1))
	if err != nil {
		tb.Fatal(err)
	}
	src := defs.Source("transactions")
	rng := rand.New(rand.NewPCG(1, 2))
	w := &fraudWorkload{engine: eng}
	const week = 7 * 24 * 3600 * 1000
	n := users * perDay * 7
	start := int64(1_760_000_000_000)
	countries := []string{"DE", "FR", "US", "GB"}
	for i := range users {
		w.users = append(w.users, fmt.Sprintf("u%06d", i))
	}
	for i := range n {
		u := rng.IntN(users)
		f := make([]features.Value, len(src.Schema))
		set := func(name string, v features.Value) { f[src.Field(name)] = v }
		ts := start + int64(i)*week/int64(n)
		set("txn_id", features.String(fmt.Sprintf("t%d", i)))
		set("user_id", features.String(w.users[u]))
		set("merchant_id", features.String(fmt.Sprintf("m%04d", (u*7+rng.IntN(20))%1000)))
		set("amount", features.Float(float64(rng.IntN(100000))/100))
		set("country", features.String(countries[rng.IntN(10)%len(countries)]))
		set("ts", features.Timestamp(ts))
		w.events = append(w.events, features.Event{Time: ts, Partition: int32(u % 8), Offset: int64(i), Fields: f})
	}
	return w
}

func (w *fraudWorkload) states(tb testing.TB) map[string]*features.State {
	states := map[string]*features.State{}
	for i := range w.events {
		u := w.events[i].Fields[1].Str()
		s := states[u]
		if s == nil {
			s = w.engine.NewState()
			states[u] = s
		}
		if _, err := w.engine.Apply(s, &w.events[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return states
}

// BenchmarkApply measures events applied per second on one core to states
// held in memory: each pass applies a week of events to fresh states, in
// time order, so tiles are created, filled and pruned as in ingest.
func BenchmarkApply(b *testing.B) {
	for _, view := range []string{"user_txn", "merchant_txn"} {
		b.Run(view, func(b *testing.B) {
			w := newFraudWorkload(b, view, 1000, 50)
			key := 1 // user_id
			if view == "merchant_txn" {
				key = 2
			}
			slot := map[string]int{}
			slots := make([]int, len(w.events))
			for i := range w.events {
				k := w.events[i].Fields[key].Str()
				if _, ok := slot[k]; !ok {
					slot[k] = len(slot)
				}
				slots[i] = slot[k]
			}
			states := make([]*features.State, len(slot))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(states)
				for i := range w.events {
					s := states[slots[i]]
					if s == nil {
						s = w.engine.NewState()
						states[slots[i]] = s
					}
					if _, err := w.engine.Apply(s, &w.events[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(w.events))/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.events)), "ns/event")
		})
	}
}

// BenchmarkEvaluate measures evaluating every feature of one entity's view,
// and reports the encoded state size of an active entity.
func BenchmarkEvaluate(b *testing.B) {
	for _, perDay := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("user_txn/%d-per-day", perDay), func(b *testing.B) {
			w := newFraudWorkload(b, "user_txn", 200, perDay)
			states := w.states(b)
			now := w.events[len(w.events)-1].Time
			var bytes int
			list := make([]*features.State, 0, len(states))
			for _, s := range states {
				bytes += len(w.engine.AppendState(nil, s))
				list = append(list, s)
			}
			out := make([]features.Value, len(w.engine.View().Features))
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if err := w.engine.Evaluate(list[i%len(list)], now, out); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(bytes)/float64(len(states)), "state-bytes/entity")
		})
	}
}
