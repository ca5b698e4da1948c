package features_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

const engineDefs = `project: t
entities: [{name: user, join_keys: [uid]}]
sources:
  - name: s
    topic: s
    event_time: ts
    schema: {uid: string, amount: float, cat: string, ts: timestamp}
feature_views:
  - name: v
    version: 1
    entity: user
    source: s
    filter: "e.amount >= 0.0"
    features:
      - {name: n_5m, agg: count, window: 5m, granularity: 1m}
      - {name: sum_5m, agg: sum, field: amount, window: 5m, granularity: 1m}
      - {name: avg_5m, agg: avg, field: amount, window: 5m, granularity: 1m}
      - {name: min_all, agg: min, field: amount}
      - {name: std_all, agg: stddev, field: amount}
      - {name: cats_5m, agg: count_distinct, field: cat, window: 5m, granularity: 1m}
      - {name: last_cat, agg: last, field: cat}
  - name: other
    version: 1
    entity: user
    source: s
    features: [{name: n, agg: count}]
feature_services:
  - name: svc
    features: [v@1:sum_5m, v:n_5m]
    on_demand:
      - {name: per_event, expr: "f['v@1:sum_5m'] / double(f['v:n_5m'])"}
      - {name: scaled, expr: "f['v@1:sum_5m'] * request.scale"}
`

type engineFixture struct {
	defs *features.Definitions
	eng  *features.Engine
}

func newEngineFixture(t *testing.T) engineFixture {
	t.Helper()
	defs := parse(t, engineDefs)
	eng, err := features.NewEngine(defs, defs.View("v", 1))
	if err != nil {
		t.Fatal(err)
	}
	return engineFixture{defs, eng}
}

const minute = 60_000

func event(ms int64, offset int64, amount features.Value, cat string) *features.Event {
	c := features.Null
	if cat != "" {
		c = features.String(cat)
	}
	return &features.Event{Time: ms, Offset: offset, Fields: []features.Value{features.String("u1"), amount, c, features.Timestamp(ms)}}
}

func (f engineFixture) eval(t *testing.T, s *features.State, at int64) map[string]features.Value {
	t.Helper()
	out := make([]features.Value, len(f.eng.View().Features))
	if err := f.eng.Evaluate(s, at, out); err != nil {
		t.Fatal(err)
	}
	m := map[string]features.Value{}
	for i, feat := range f.eng.View().Features {
		m[feat.Name] = out[i]
	}
	return m
}

// TestWindowTiles checks DESIGN §4's window rule at tile edges: with W=5m and
// G=1m, an event is in the window at t iff te <= t and tile(te) >= tile(t)-4.
func TestWindowTiles(t *testing.T) {
	f := newEngineFixture(t)
	s := f.eng.NewState()
	base := int64(100 * minute)
	for i, at := range []int64{base, base + minute - 1, base + minute, base + 3*minute + 30_000} {
		if ok, err := f.eng.Apply(s, event(at, int64(i), features.Float(float64(i+1)), "c")); !ok || err != nil {
			t.Fatalf("apply: %v %v", ok, err)
		}
	}
	for _, tc := range []struct {
		at   int64
		want int64
	}{
		{base + 3*minute + 30_000, 4},
		{base + 5*minute - 1, 4}, // tile(t) = base+4: tiles base..base+4
		{base + 5*minute, 2},     // tile(t) = base+5: the two events of tile base left
		{base + 6*minute - 1, 2},
		{base + 6*minute, 1},
		{base + 8*minute - 1, 1}, // tiles base+3..base+7 hold the last event
		{base + 8*minute, 0},
	} {
		got := f.eval(t, s, tc.at)
		if got["n_5m"] != features.Int(tc.want) {
			t.Errorf("count at base+%dms = %v, want %d", tc.at-base, got["n_5m"], tc.want)
		}
		if tc.want == 0 && (got["sum_5m"] != features.Float(0) || !got["avg_5m"].IsNull() || got["cats_5m"] != features.Int(0)) {
			t.Errorf("empty window at base+%dms: sum %v avg %v distinct %v, want 0, null, 0", tc.at-base, got["sum_5m"], got["avg_5m"], got["cats_5m"])
		}
	}
	if got := f.eval(t, s, base+8*minute); got["min_all"] != features.Float(1) || got["last_cat"] != features.String("c") {
		t.Errorf("lifetime features after the window emptied: min %v last %v", got["min_all"], got["last_cat"])
	}
}

// TestEmpty: the values over no events are DESIGN §4's empty window, 0
// for count, sum and count_distinct and null otherwise, in the order
// Evaluate writes them, for a whole view and for some of its features.
func TestEmpty(t *testing.T) {
	f := newEngineFixture(t)
	out := make([]features.Value, len(f.eng.View().Features))
	f.eng.Empty(out)
	want := []features.Value{features.Int(0), features.Float(0), features.Null, features.Null, features.Null, features.Int(0), features.Null}
	if !slices.Equal(out, want) {
		t.Errorf("Empty = %v, want %v", out, want)
	}
	part, err := features.NewEngine(f.defs, f.eng.View(), "last_cat", "cats_5m", "sum_5m")
	if err != nil {
		t.Fatal(err)
	}
	out = out[:3]
	part.Empty(out)
	if want := []features.Value{features.Null, features.Int(0), features.Float(0)}; !slices.Equal(out, want) {
		t.Errorf("Empty of last_cat, cats_5m, sum_5m = %v, want %v", out, want)
	}
}

func TestLastIsTheLatestEventsField(t *testing.T) {
	f := newEngineFixture(t)
	s := f.eng.NewState()
	apply := func(ev *features.Event, partition int32) {
		ev.Partition = partition
		if _, err := f.eng.Apply(s, ev); err != nil {
			t.Fatal(err)
		}
	}
	apply(event(10*minute, 5, features.Float(1), "b"), 0)
	apply(event(10*minute, 3, features.Float(1), "c"), 1) // same time, higher partition: later
	apply(event(9*minute, 9, features.Float(1), "z"), 7)  // earlier time: not last
	if got := f.eval(t, s, 10*minute)["last_cat"]; got != features.String("c") {
		t.Fatalf("last = %v, want \"c\"", got)
	}
	apply(event(11*minute, 1, features.Float(1), ""), 0) // the latest event has no cat
	if got := f.eval(t, s, 11*minute)["last_cat"]; !got.IsNull() {
		t.Fatalf("last = %v, want null: the latest event's field", got)
	}
}

// TestNegativeZero checks that -0 and 0 in either order give the same bits.
func TestNegativeZero(t *testing.T) {
	f := newEngineFixture(t)
	negZero := features.Float(math.Copysign(0, -1))
	var results []map[string]features.Value
	for _, order := range [][]features.Value{{negZero, features.Float(0)}, {features.Float(0), negZero}, {negZero}} {
		s := f.eng.NewState()
		for i, v := range order {
			if _, err := f.eng.Apply(s, event(minute, int64(i), v, "a")); err != nil {
				t.Fatal(err)
			}
		}
		results = append(results, f.eval(t, s, minute))
	}
	for _, r := range results {
		for _, name := range []string{"sum_5m", "avg_5m", "min_all"} {
			if r[name] != features.Float(0) {
				t.Errorf("%s = %v (bits %x), want +0", name, r[name], math.Float64bits(r[name].Float()))
			}
		}
	}
}

func TestEvaluateBeforeLastEvent(t *testing.T) {
	f := newEngineFixture(t)
	s := f.eng.NewState()
	if _, err := f.eng.Apply(s, event(10*minute, 0, features.Float(1), "a")); err != nil {
		t.Fatal(err)
	}
	out := make([]features.Value, len(f.eng.View().Features))
	if err := f.eng.Evaluate(s, 10*minute-1, out); !errors.Is(err, features.ErrEvaluateBeforeLastEvent) {
		t.Fatalf("evaluate before the latest event: %v, want ErrEvaluateBeforeLastEvent", err)
	}
	if last, ok := s.LastEventTime(); !ok || last != 10*minute {
		t.Fatalf("LastEventTime = %d, %v", last, ok)
	}
}

// TestApplyRejects checks that bad events are errors and leave state as it was.
func TestApplyRejects(t *testing.T) {
	f := newEngineFixture(t)
	s := f.eng.NewState()
	if _, err := f.eng.Apply(s, event(minute, 0, features.Float(2), "a")); err != nil {
		t.Fatal(err)
	}
	before := f.eng.AppendState(nil, s)
	for name, ev := range map[string]*features.Event{
		"null in the filter": event(2*minute, 1, features.Null, "a"),
		"wrong type":         event(2*minute, 1, features.String("2"), "a"),
		"too large for sums": event(2*minute, 1, features.Float(1e200), "a"),
		"missing fields":     {Time: 2 * minute, Fields: []features.Value{features.String("u1")}},
		"infinite":           event(2*minute, 1, features.Float(math.Inf(1)), "a"),
	} {
		if ok, err := f.eng.Apply(s, ev); ok || err == nil {
			t.Errorf("%s: applied %v, err %v; want an error", name, ok, err)
		}
	}
	if ok, err := f.eng.Apply(s, event(2*minute, 1, features.Float(-1), "a")); ok || err != nil {
		t.Errorf("filtered out: applied %v, err %v; want false, nil", ok, err)
	}
	if after := f.eng.AppendState(nil, s); !bytes.Equal(before, after) {
		t.Error("rejected events changed the state")
	}
}

func TestStateEncoding(t *testing.T) {
	f := newEngineFixture(t)
	s := f.eng.NewState()
	for i := range 500 {
		at := int64(i) * 7_000
		if _, err := f.eng.Apply(s, event(at, int64(i), features.Float(float64(i%37)/3), string(rune('a'+i%200)))); err != nil {
			t.Fatal(err)
		}
	}
	enc := f.eng.AppendState(nil, s)
	got, err := f.eng.DecodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if re := f.eng.AppendState(nil, got); !bytes.Equal(re, enc) {
		t.Fatal("decode then encode changed the bytes")
	}
	if last, ok, err := f.eng.LastEventTimeOf(enc); err != nil || last != 499*7_000 || !ok {
		t.Fatalf("LastEventTimeOf = %d, %t, %v; want %d, true", last, ok, err, 499*7_000)
	}
	if _, ok, err := f.eng.LastEventTimeOf(f.eng.AppendState(nil, f.eng.NewState())); err != nil || ok {
		t.Fatalf("LastEventTimeOf a new state = %t, %v; want no event", ok, err)
	}
	now := int64(500 * 7_000)
	if a, b := f.eval(t, s, now), f.eval(t, got, now); !equalValues(a, b) {
		t.Fatalf("decoded state evaluates to %v, want %v", b, a)
	}

	if _, err := f.eng.DecodeState(append([]byte{99}, enc[1:]...)); !errors.Is(err, features.ErrCorruptState) {
		t.Errorf("unknown format version: %v, want ErrCorruptState", err)
	}
	for n := range len(enc) {
		if _, err := f.eng.DecodeState(enc[:n]); !errors.Is(err, features.ErrCorruptState) && !errors.Is(err, features.ErrStateMismatch) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorruptState", n, err)
		}
	}
	if _, err := f.eng.DecodeState(append(enc, 0)); !errors.Is(err, features.ErrCorruptState) {
		t.Errorf("trailing byte: %v, want ErrCorruptState", err)
	}
	other, err := features.NewEngine(f.defs, f.defs.View("other", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.DecodeState(enc); !errors.Is(err, features.ErrStateMismatch) {
		t.Errorf("another view's state: %v, want ErrStateMismatch", err)
	}
}

// TestPartialEngine checks that an engine of some of a view's features gives
// each of them the values the whole view's engine gives, reads only the
// fields they need, and keeps its states apart from the view's.
func TestPartialEngine(t *testing.T) {
	f := newEngineFixture(t)
	v := f.defs.View("v", 1)
	rng := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		var names []string
		for _, i := range rng.Perm(len(v.Features))[:1+rng.IntN(len(v.Features))] {
			names = append(names, v.Features[i].Name)
		}
		part, err := features.NewEngine(f.defs, v, names...)
		if err != nil {
			t.Fatal(err)
		}
		whole, some := f.eng.NewState(), part.NewState()
		out := make([]features.Value, len(names))
		at := int64(0)
		for i := range 300 {
			at += rng.Int64N(2 * minute)
			amount := features.Float(float64(rng.IntN(40)-5) / 4) // some fail the filter
			ev := event(at-rng.Int64N(6*minute), int64(i), amount, string(rune('a'+rng.IntN(30))))
			ev.Time = max(ev.Time, 0)
			okWhole, errWhole := f.eng.Apply(whole, ev)
			okSome, errSome := part.Apply(some, ev)
			if okWhole != okSome || (errWhole == nil) != (errSome == nil) {
				t.Fatalf("%v: apply gave %v, %v; the view's engine %v, %v", names, okSome, errSome, okWhole, errWhole)
			}
			if rng.IntN(10) > 0 {
				continue
			}
			when := at + rng.Int64N(10*minute)
			want := f.eval(t, whole, when)
			if err := part.Evaluate(some, when, out); err != nil {
				t.Fatal(err)
			}
			for j, name := range names {
				if !out[j].Equal(want[name]) {
					t.Fatalf("%v: %s at %d = %v, the view's engine gives %v", names, name, when, out[j], want[name])
				}
			}
		}
		if _, err := f.eng.DecodeState(part.AppendState(nil, some)); !errors.Is(err, features.ErrStateMismatch) {
			t.Fatalf("%v: the view's engine decoded a partial state: %v", names, err)
		}
		if _, err := part.DecodeState(f.eng.AppendState(nil, whole)); !errors.Is(err, features.ErrStateMismatch) {
			t.Fatalf("%v: a partial engine decoded the view's state: %v", names, err)
		}
	}

	count, err := features.NewEngine(f.defs, v, "n_5m")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := count.Fields(), []int{1}; !slices.Equal(got, want) { // the filter's amount
		t.Errorf("fields of a count = %v, want %v", got, want)
	}
	if _, err := features.NewEngine(f.defs, v, "n_5m", "ghost"); !errors.Is(err, features.ErrUnknownFeature) {
		t.Errorf("unknown feature: %v, want ErrUnknownFeature", err)
	}
	if _, err := features.NewEngine(f.defs, v, "n_5m", "n_5m"); err == nil {
		t.Error("a feature named twice: no error")
	}
}

func equalValues(a, b map[string]features.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !v.Equal(b[k]) {
			return false
		}
	}
	return true
}

// FuzzDecodeState feeds arbitrary bytes to the state decoder: it must return
// a state or an error, never panic, and a state it returns must evaluate and
// re-encode to bytes it decodes again.
func FuzzDecodeState(f *testing.F) {
	fx := newEngineFixture(&testing.T{})
	s := fx.eng.NewState()
	f.Add(fx.eng.AppendState(nil, s))
	for i := range 300 {
		fx.eng.Apply(s, event(int64(i)*1_000, int64(i), features.Float(float64(i)*1.1), string(rune('a'+i))))
		if i%50 == 0 || i == 299 {
			f.Add(fx.eng.AppendState(nil, s))
		}
	}
	for i := range 200 { // a tile with more distinct values than it counts exactly: a sketch
		fx.eng.Apply(s, event(300_000, int64(300+i), features.Float(1), fmt.Sprint("cat", i)))
	}
	f.Add(fx.eng.AppendState(nil, s))
	out := make([]features.Value, len(fx.eng.View().Features))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := fx.eng.DecodeState(b)
		if err != nil {
			if !errors.Is(err, features.ErrCorruptState) && !errors.Is(err, features.ErrStateMismatch) {
				t.Fatalf("error %v is neither ErrCorruptState nor ErrStateMismatch", err)
			}
			return
		}
		last, some := s.LastEventTime()
		if l, ok, err := fx.eng.LastEventTimeOf(b); err != nil || l != last || ok != some {
			t.Fatalf("LastEventTimeOf = %d, %t, %v; the decoded state's is %d, %t", l, ok, err, last, some)
		}
		if err := fx.eng.Evaluate(s, max(last, 0), out); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.eng.DecodeState(fx.eng.AppendState(nil, s)); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
	})
}

func TestEvalOnDemand(t *testing.T) {
	f := newEngineFixture(t)
	svc := f.defs.Service("svc")
	out := make([]features.Value, 2)
	if err := svc.EvalOnDemand([]features.Value{features.Float(9), features.Int(3)}, map[string]any{"scale": 2.0}, out); err != nil {
		t.Fatal(err)
	}
	if out[0] != features.Float(3) || out[1] != features.Float(18) {
		t.Fatalf("on-demand = %v, want [3 18]", out)
	}
	// Division by a zero count is not a finite number; a missing request
	// field is an error. Each fails alone.
	err := svc.EvalOnDemand([]features.Value{features.Float(9), features.Int(0)}, map[string]any{}, out)
	if err == nil || !out[0].IsNull() || !out[1].IsNull() {
		t.Fatalf("on-demand = %v, %v; want nulls and an error", out, err)
	}
	for _, name := range []string{"per_event", "scaled"} {
		if !bytes.Contains([]byte(err.Error()), []byte(name)) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

// TestEvalOnDemandUintRange checks that an unsigned result past the int
// range is an error, not a negative int.
func TestEvalOnDemandUintRange(t *testing.T) {
	defs := parse(t, strings.Replace(engineDefs, "request.scale\"}", "request.scale\"}\n      - {name: big, expr: \"uint(request.n)\"}", 1))
	svc := defs.Service("svc")
	out := make([]features.Value, 3)
	in := []features.Value{features.Float(9), features.Int(3)}
	if err := svc.EvalOnDemand(in, map[string]any{"scale": 1.0, "n": 9e18}, out); err != nil || out[2] != features.Int(9e18) {
		t.Fatalf("uint(9e18) = %v, %v; want 9000000000000000000", out[2], err)
	}
	err := svc.EvalOnDemand(in, map[string]any{"scale": 1.0, "n": 1e19}, out)
	if err == nil || !out[2].IsNull() || !strings.Contains(err.Error(), "largest int") {
		t.Fatalf("uint(1e19) = %v, %v; want null and an error about the int range", out[2], err)
	}
}

// TestSumsAreOrderIndependent applies the same events in different arrival
// orders: the states encode to the same bytes, and the sum is the exact sum
// rounded once.
func TestSumsAreOrderIndependent(t *testing.T) {
	f := newEngineFixture(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for c := range 50 {
		n := 1 + rng.IntN(200)
		events := make([]*features.Event, n)
		exact := new(big.Rat)
		for i := range events {
			v := math.Abs(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(16)-4)))
			exact.Add(exact, new(big.Rat).SetFloat64(v))
			at := 10*minute + int64(rng.IntN(4*minute)) // one 5m window at 15m
			events[i] = event(at, int64(i), features.Float(v), string(rune('a'+rng.IntN(30))))
		}
		var first []byte
		for range 3 {
			rng.Shuffle(n, func(i, j int) { events[i], events[j] = events[j], events[i] })
			s := f.eng.NewState()
			for _, ev := range events {
				if _, err := f.eng.Apply(s, ev); err != nil {
					t.Fatal(err)
				}
			}
			enc := f.eng.AppendState(nil, s)
			if first == nil {
				first = enc
				want, _ := exact.Float64()
				if got := f.eval(t, s, 15*minute-1)["sum_5m"]; got != features.Float(want) {
					t.Fatalf("case %d: sum %v, want the exact sum rounded once %v", c, got, want)
				}
			} else if !bytes.Equal(first, enc) {
				t.Fatalf("case %d: arrival order changed the encoded state", c)
			}
		}
	}
}

func TestOnDemandRequestKeysAndType(t *testing.T) {
	src := `
project: p
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: s, topic: s, format: json, event_time: ts, schema: {user_id: string, amount: float, ts: timestamp}}
feature_views:
  - name: v
    version: 1
    entity: user
    source: s
    features: [{name: n, agg: count}]
feature_services:
  - name: svc
    features: ["v@1:n"]
    on_demand:
      - {name: a, expr: "request.amount * 2.0 + request['fee'] + double(f['v@1:n'])"}
      - {name: b, expr: "has(request.bonus) ? request.bonus : 0.0"}
      - {name: c, expr: "double(f['v@1:n'])"}
`
	defs, err := features.Parse("defs.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	od := defs.Service("svc").OnDemand
	for i, want := range [][]string{{"amount", "fee"}, nil, nil} {
		if got := od[i].RequestKeys(); !slices.Equal(got, want) {
			t.Errorf("%s: RequestKeys() = %q, want %q", od[i].Name, got, want)
		}
	}
	for _, i := range []int{0, 2} {
		if got := od[i].Type(); got != features.TypeFloat {
			t.Errorf("%s: Type() = %s, want float", od[i].Name, got)
		}
	}
}

// TestDistinctMergedSketches: a count_distinct whose tiles hold sketches
// keeps the merge of all but the newest tile between evaluations. Whatever
// came since (events in the newest tile, in older ones, new tiles, tiles
// expiring, evaluations at other times), it counts what a state decoded
// afresh counts, bit for bit, and evaluations at once agree.
func TestDistinctMergedSketches(t *testing.T) {
	f := newEngineFixture(t)
	rng := rand.New(rand.NewPCG(7, 8))
	s := f.eng.NewState()
	now := int64(1_760_000_000_000)
	cats := 0
	latest := int64(0) // evaluations are at or after the latest event
	for i := range 6000 {
		now += rng.Int64N(200)
		cat := fmt.Sprint("c", cats)
		if rng.IntN(3) > 0 {
			cats++ // mostly new values: tiles switch to sketches
		}
		te := now - rng.Int64N(2)*rng.Int64N(3*minute) // a third late, into older tiles
		if _, err := f.eng.Apply(s, event(te, int64(i), features.Float(1), cat)); err != nil {
			t.Fatal(err)
		}
		latest = max(latest, te)
		if rng.IntN(4) > 0 {
			continue
		}
		fresh, err := f.eng.DecodeState(f.eng.AppendState(nil, s))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second reuses what the first merged
			when := latest + rng.Int64N(2)*rng.Int64N(3*minute)
			if got, want := f.eval(t, s, when)["cats_5m"], f.eval(t, fresh, when)["cats_5m"]; got != want {
				t.Fatalf("event %d, at %d: cats_5m %v, decoded afresh %v", i, when, got, want)
			}
		}
	}
	if n := f.eval(t, s, latest)["cats_5m"].Int(); n < 1000 {
		t.Fatalf("cats_5m %d at the end: want the tiles to hold sketches (over %d distinct values each)", n, 128)
	}
	// Evaluations at once, as serve's of a shared state (run with -race).
	want := f.eval(t, s, latest)["cats_5m"]
	var wg sync.WaitGroup
	got := make([]features.Value, 8)
	for g := range got {
		wg.Go(func() {
			out := make([]features.Value, len(f.eng.View().Features))
			for k := range 20 {
				if err := f.eng.Evaluate(s, latest+int64((g+k)%3)*minute, out); err != nil {
					t.Error(err)
				}
			}
			if err := f.eng.Evaluate(s, latest, out); err != nil {
				t.Error(err)
			}
			got[g] = out[5]
		})
	}
	wg.Wait()
	for g, v := range got {
		if v != want {
			t.Errorf("goroutine %d: cats_5m %v, want %v", g, v, want)
		}
	}
}
