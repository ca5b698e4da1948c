package features_test

// Property test: random definitions and random, out-of-order event streams
// go through the engine; at random checkpoints every feature is evaluated at
// random times and compared, bit for bit, with the naive reference of
// reference_test.go. States are also encoded and decoded at every checkpoint.
//
// Each case derives its seed from propertyBaseSeed. To rerun one case:
//
//	QUIVER_PROPERTY_SEED=<seed> go test ./features/ -run EngineMatchesReference -v
//
// or pass -quiver.seed=<seed>. QUIVER_PROPERTY_CASES (or -quiver.cases)
// overrides the number of cases.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
)

const propertyBaseSeed uint64 = 0x9e3779b97f4a7c15 ^ 20240917

var (
	propertySeedFlag  = flag.String("quiver.seed", "", "run only the property test case with this seed (also QUIVER_PROPERTY_SEED)")
	propertyCasesFlag = flag.Int("quiver.cases", 0, "number of property test cases (also QUIVER_PROPERTY_CASES); 0 for the default")
)

// caseSeed derives case i's seed from the base seed (splitmix64).
func caseSeed(i int) uint64 {
	z := propertyBaseSeed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func TestEngineMatchesReference(t *testing.T) {
	if s := propertySeed(); s != "" {
		seed, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("bad seed %q: %v", s, err)
		}
		st, err := runPropertyCase(seed, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: %s", seed, st)
		return
	}
	cases := 400
	if testing.Short() {
		cases = 40
	}
	if n := propertyCases(t); n > 0 {
		cases = n
	}
	start := time.Now()
	type result struct {
		seed uint64
		st   caseStats
		err  error
	}
	results := make([]result, cases)
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				next.Lock()
				c := i
				i++
				next.Unlock()
				if c >= cases {
					return
				}
				seed := caseSeed(c)
				st, err := runPropertyCase(seed, nil)
				results[c] = result{seed, st, err}
			}
		})
	}
	wg.Wait()
	var total caseStats
	failed := 0
	for _, r := range results {
		total.add(r.st)
		if r.err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("%v\nrerun: QUIVER_PROPERTY_SEED=%d go test ./features/ -run EngineMatchesReference -v", r.err, r.seed)
			}
		}
	}
	if failed > 5 {
		t.Errorf("... %d failing cases in all", failed)
	}
	t.Logf("%d cases in %v: %s", cases, time.Since(start).Round(time.Millisecond), total)
}

func propertySeed() string {
	if *propertySeedFlag != "" {
		return *propertySeedFlag
	}
	return os.Getenv("QUIVER_PROPERTY_SEED")
}

func propertyCases(t *testing.T) int {
	if *propertyCasesFlag > 0 {
		return *propertyCasesFlag
	}
	if s := os.Getenv("QUIVER_PROPERTY_CASES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("QUIVER_PROPERTY_CASES=%q: %v", s, err)
		}
		return n
	}
	return 0
}

// caseStats counts what a case exercised.
type caseStats struct {
	events, applied, filtered, errored int
	checkpoints, queries, values       int
	nonEmpty                           int // compared values that were not the empty window's
	decodedContinued                   int
	expiredOnArrival                   int // applied events already outside some feature's window at every allowed query time
}

func (s *caseStats) add(o caseStats) {
	s.events += o.events
	s.applied += o.applied
	s.filtered += o.filtered
	s.errored += o.errored
	s.checkpoints += o.checkpoints
	s.queries += o.queries
	s.values += o.values
	s.nonEmpty += o.nonEmpty
	s.decodedContinued += o.decodedContinued
	s.expiredOnArrival += o.expiredOnArrival
}

func (s caseStats) String() string {
	return fmt.Sprintf("%d events (%d applied, %d of them already out of some window, %d filtered out, %d filter errors), %d checkpoints (%d continued on the decoded state), %d queries, %d values compared (%d non-empty)",
		s.events, s.applied, s.expiredOnArrival, s.filtered, s.errored, s.checkpoints, s.decodedContinued, s.queries, s.values, s.nonEmpty)
}

// window choices: window and granularity ("" for the default W/60).
var propertyWindows = []struct{ window, gran string }{
	{"1m", ""}, {"1m", "1m"}, {"1m", "10s"}, {"7s", "1s"}, {"5m", ""}, {"5m", "1m"}, {"5m", "30s"},
	{"10m", ""}, {"10m", "5m"}, {"1h", ""}, {"1h", "10m"}, {"1h", "15m"}, {"90m", ""},
	{"90m", "30m"}, {"90m", "5m"}, {"2h", "2h"},
}

var propertyAggFields = map[string][]string{
	"count":          {""},
	"sum":            {"amount", "qty"},
	"avg":            {"amount", "qty"},
	"stddev":         {"amount", "qty"},
	"min":            {"amount", "qty", "ts", "seen"},
	"max":            {"amount", "qty", "ts", "seen"},
	"count_distinct": {"cat", "qty", "ok", "uid"},
	"last":           {"uid", "amount", "qty", "cat", "ok", "ts", "seen"},
}

var propertyAggs = []string{"count", "sum", "avg", "stddev", "min", "max", "count_distinct", "last"}

func mustDuration(s string) int64 {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d.Milliseconds()
}

// genDefinitions writes the YAML of one source, one entity and one view of
// 4–10 random features, and the reference's description of the features.
func genDefinitions(rng *rand.Rand) (string, string, []refFeature) {
	var b strings.Builder
	b.WriteString("project: prop\n")
	b.WriteString("entities:\n  - name: user\n    join_keys: [uid]\n")
	b.WriteString("sources:\n  - name: events\n    topic: events\n    event_time: ts\n    schema: {")
	for i, n := range refFieldNames {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", n, refFieldTypes[i])
	}
	b.WriteString("}\n")
	b.WriteString("feature_views:\n  - name: v\n    version: 1\n    entity: user\n    source: events\n")
	filter := ""
	if rng.IntN(2) == 0 {
		filter = refFilterNames[rng.IntN(len(refFilterNames))]
		fmt.Fprintf(&b, "    filter: %q\n", filter)
	}
	b.WriteString("    features:\n")
	n := 4 + rng.IntN(7)
	// Random name prefixes, so that the view's order is not the engine's
	// (name-sorted) layout.
	letters := []byte("abcdefghijklmnopqrstuvwxyz")
	rng.Shuffle(len(letters), func(i, j int) { letters[i], letters[j] = letters[j], letters[i] })
	var feats []refFeature
	for i := range n {
		agg := propertyAggs[rng.IntN(len(propertyAggs))]
		fields := propertyAggFields[agg]
		field := fields[rng.IntN(len(fields))]
		f := refFeature{name: fmt.Sprintf("%c%d_%s", letters[i], i, agg), agg: agg, field: -1}
		fmt.Fprintf(&b, "      - {name: %s, agg: %s", f.name, agg)
		if field != "" {
			f.field = refFieldIndex(field)
			fmt.Fprintf(&b, ", field: %s", field)
		}
		if rng.IntN(5) > 0 { // a fifth of the features are lifetime ones
			w := propertyWindows[rng.IntN(len(propertyWindows))]
			f.window = mustDuration(w.window)
			fmt.Fprintf(&b, ", window: %s", w.window)
			if w.gran == "" {
				f.gran = f.window / 60
			} else {
				f.gran = mustDuration(w.gran)
				fmt.Fprintf(&b, ", granularity: %s", w.gran)
			}
		}
		b.WriteString("}\n")
		feats = append(feats, f)
	}
	return b.String(), filter, feats
}

// genStream returns a random stream in arrival order: events over a few
// hours, shuffled within a bounded lateness (a few much later), on a few
// partitions with increasing offsets, with ties on event time, nulls, and
// numbers of very different magnitudes.
func genStream(rng *rand.Rand) []features.Event {
	n := 1 + rng.IntN(400)
	if rng.IntN(4) > 0 {
		n = 200 + rng.IntN(201)
	}
	base := int64(1_700_000_000_000) + rng.Int64N(1_000_000_000)
	if rng.IntN(8) == 0 {
		base = rng.Int64N(3) * 3_600_000 // near the epoch, on tile boundaries
	}
	span := (1 + rng.Int64N(6)) * 3_600_000
	if rng.IntN(6) == 0 {
		span = 1 + rng.Int64N(10*60_000) // dense: everything in a few windows
	}
	quantum := []int64{1, 1, 1, 1000, 60_000, 7}[rng.IntN(6)]
	lateness := []int64{0, 1000, 60_000, 10 * 60_000, 10 * 60_000}[rng.IntN(5)]
	nullRate := []float64{0, 0.05, 0.1, 0.1, 0.3}[rng.IntN(5)]
	partitions := 1 + rng.IntN(4)
	extreme := rng.IntN(6) == 0

	// Pools keep count_distinct below its exact threshold in any window.
	cats := []string{"x", "a", "", "é", "cat"}
	for i := range 1 + rng.IntN(95) {
		cats = append(cats, fmt.Sprintf("c%d", i))
	}
	cats = cats[:1+rng.IntN(len(cats))]
	qtys := []int64{0, 1, 2, -3, 5, 6, 7, 10, 11}
	for range rng.IntN(80) {
		switch rng.IntN(10) {
		case 0:
			qtys = append(qtys, 1<<53+1+rng.Int64N(1000)) // not exact as float64
		case 1:
			qtys = append(qtys, -(1<<62)+rng.Int64N(1<<40))
		case 2:
			qtys = append(qtys, math.MaxInt64-rng.Int64N(3))
		default:
			qtys = append(qtys, rng.Int64N(200)-50)
		}
	}
	qtys = qtys[:1+rng.IntN(len(qtys))]
	uids := []string{"u1", "u2", "", "a"}[:1+rng.IntN(4)]

	null := func() bool { return rng.Float64() < nullRate }
	amount := func() float64 {
		var x float64
		switch k := rng.IntN(20); {
		case k < 7:
			x = math.Round(rng.NormFloat64()*100_000) / 100 // cents
		case k < 10:
			x = rng.NormFloat64() * 1000
		case k < 12:
			x = float64(rng.IntN(201) - 100)
		case k < 14:
			x = (rng.Float64()*2 - 1) * math.Pow(10, float64(6+rng.IntN(7))) // up to 1e12
		case k < 16:
			x = rng.NormFloat64() * math.Pow(10, -float64(3+rng.IntN(10))) // tiny
		case k < 18:
			x = []float64{10, 10.000000000000002, 9.999999999999998, 0.1, 0.2, 0.3, 1e12, -1e12, 0}[rng.IntN(9)]
		default:
			if extreme {
				x = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(281)-140))
				if math.Abs(x) > 1e140 { // the engine's bound on numbers that are summed
					x = math.Copysign(1e140, x)
				}
			} else {
				x = math.Round(rng.NormFloat64()*1e14) / 100
			}
		}
		if x == 0 {
			x = 0 // never -0
		}
		return x
	}

	times := make([]int64, n)
	for i := range times {
		te := base + rng.Int64N(span)
		te -= te % quantum
		if i > 0 && rng.IntN(10) == 0 {
			te = times[rng.IntN(i)] // an exact tie
		}
		times[i] = te
	}
	slices.Sort(times)
	type arrival struct {
		key int64
		ev  features.Event
	}
	arrivals := make([]arrival, n)
	for i, te := range times {
		f := make([]features.Value, numFields)
		if !null() {
			f[fUID] = features.String(uids[rng.IntN(len(uids))])
		}
		if !null() {
			f[fAmount] = features.Float(amount())
		}
		if !null() {
			f[fQty] = features.Int(qtys[rng.IntN(len(qtys))])
		}
		if !null() {
			f[fCat] = features.String(cats[rng.IntN(len(cats))])
		}
		if !null() {
			f[fOK] = features.Bool(rng.IntN(2) == 0)
		}
		f[fTS] = features.Timestamp(te)
		if !null() {
			f[fSeen] = features.Timestamp(te + rng.Int64N(2*86_400_000) - 86_400_000)
		}
		delay := int64(0)
		if lateness > 0 {
			delay = rng.Int64N(lateness + 1)
		}
		if rng.IntN(50) == 0 {
			delay += rng.Int64N(3 * 3_600_000) // very late
		}
		arrivals[i] = arrival{te + delay, features.Event{Time: te, Fields: f}}
	}
	slices.SortStableFunc(arrivals, func(a, b arrival) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	offsets := make([]int64, partitions)
	for p := range offsets {
		offsets[p] = rng.Int64N(1000)
	}
	events := make([]features.Event, n)
	for i, a := range arrivals {
		p := rng.IntN(partitions)
		offsets[p] += 1 + rng.Int64N(3)
		a.ev.Partition, a.ev.Offset = int32(p), offsets[p]
		events[i] = a.ev
	}
	return events
}

// queryTimes picks times at or after last (the latest applied event time):
// last itself, just after it, tile boundaries of the features, the edges of
// the instants when recent events leave windows, and far later.
func queryTimes(rng *rand.Rand, feats []refFeature, applied []refEvent, last int64) []int64 {
	var ts []int64
	windowed := slices.DeleteFunc(slices.Clone(feats), func(f refFeature) bool { return f.window == 0 })
	for range 1 + rng.IntN(4) {
		t := last
		switch k := rng.IntN(10); {
		case k < 2:
		case k < 4:
			t = last + rng.Int64N(3*60_000)
		case k < 6 && len(windowed) > 0:
			f := windowed[rng.IntN(len(windowed))]
			t = (refFloorDiv(last, f.gran)+1+rng.Int64N(3))*f.gran - rng.Int64N(2)
		case k < 8 && len(windowed) > 0 && len(applied) > 0:
			// When a recent event is about to leave f's window, or just left.
			f := windowed[rng.IntN(len(windowed))]
			e := applied[len(applied)-1-rng.IntN(min(len(applied), 20))]
			t = (refFloorDiv(e.time, f.gran)+f.window/f.gran)*f.gran - rng.Int64N(2)
		case k < 9:
			t = last + rng.Int64N(3*3_600_000)
		default:
			t = last + 3*3_600_000 + rng.Int64N(30*86_400_000) // every window expired
		}
		ts = append(ts, max(t, last))
	}
	return ts
}

// runPropertyCase runs one case; logf, when not nil, receives a description.
func runPropertyCase(seed uint64, logf func(string, ...any)) (st caseStats, err error) {
	rng := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	yaml, filterExpr, feats := genDefinitions(rng)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("property case seed %d: panic: %v\n%s\ndefinitions:\n%s", seed, r, debug.Stack(), yaml)
		}
	}()
	events := genStream(rng)
	st.events = len(events)
	fail := func(format string, args ...any) (caseStats, error) {
		return st, fmt.Errorf("property case seed %d: %s\ndefinitions:\n%s", seed, fmt.Sprintf(format, args...), yaml)
	}
	if logf != nil {
		logf("definitions:\n%s%d events", yaml, len(events))
	}

	defs, err := features.Parse("property.yaml", []byte(yaml))
	if err != nil {
		return fail("parse: %v", err)
	}
	view := defs.View("v", 1)
	if view == nil || len(view.Features) != len(feats) {
		return fail("parsed view: %+v", view)
	}
	for i, f := range view.Features {
		if f.Name != feats[i].name || time.Duration(feats[i].window)*time.Millisecond != f.Window ||
			time.Duration(feats[i].gran)*time.Millisecond != f.Granularity {
			return fail("parsed feature %d: %+v, want %+v", i, *f, feats[i])
		}
	}
	src := defs.Source("events")
	for i, n := range refFieldNames {
		if src.Field(n) != i {
			return fail("schema: field %s at %d, want %d", n, src.Field(n), i)
		}
	}
	eng, err := features.NewEngine(defs, view)
	if err != nil {
		return fail("NewEngine: %v", err)
	}
	filter := refFilters[filterExpr]

	state := eng.NewState()
	// narrow is fed the same events with the fields Apply does not read
	// (Engine.Fields) nulled, and is never decoded, where state sometimes
	// goes on from its decoding: they must end up the same.
	narrow := eng.NewState()
	var applied []refEvent
	var last int64
	seen := false // whether any event was applied
	checkEvery := []int{3, 10, 25, 60}[rng.IntN(4)]
	beforeLastChecked := false
	out := make([]features.Value, len(feats))
	out2 := make([]features.Value, len(feats))

	// Before any event: every feature is the empty window's.
	for i := 0; i <= len(events); i++ {
		if i > 0 {
			ev := &events[i-1]
			want := triTrue
			if filter != nil {
				want = filter(ev.Fields)
			}
			ok, err := eng.Apply(state, ev)
			cut := features.Event{Time: ev.Time, Partition: ev.Partition, Offset: ev.Offset, Fields: make([]features.Value, len(ev.Fields))}
			for _, f := range eng.Fields() {
				cut.Fields[f] = ev.Fields[f]
			}
			if ok2, err2 := eng.Apply(narrow, &cut); ok2 != ok || (err2 == nil) != (err == nil) {
				return fail("event %d (%s): Apply = %v, %v; with only the fields %v, %v, %v", i-1, fmtEvent(ev), ok, err, eng.Fields(), ok2, err2)
			}
			switch {
			case want == triErr && err == nil:
				return fail("event %d (%s): filter %q should fail to evaluate, Apply returned ok=%v, no error", i-1, fmtEvent(ev), filterExpr, ok)
			case want != triErr && err != nil:
				return fail("event %d (%s): Apply: %v", i-1, fmtEvent(ev), err)
			case want != triErr && ok != (want == triTrue):
				return fail("event %d (%s): Apply passed=%v, want %v (filter %q)", i-1, fmtEvent(ev), ok, want == triTrue, filterExpr)
			}
			switch want {
			case triErr:
				st.errored++
			case triFalse:
				st.filtered++
			case triTrue:
				st.applied++
				applied = append(applied, refEvent{ev.Time, ev.Partition, ev.Offset, slices.Clone(ev.Fields)})
				for _, f := range feats {
					if f.window > 0 && seen && !f.covers(ev.Time, max(last, ev.Time)) {
						st.expiredOnArrival++ // in no window the engine can still be asked for
						break
					}
				}
				if !seen || ev.Time > last {
					last, seen = ev.Time, true
				}
			}
			if i < len(events) && rng.IntN(checkEvery) != 0 {
				continue
			}
		}
		// A checkpoint.
		st.checkpoints++
		if l, ok := state.LastEventTime(); ok != seen || seen && l != last {
			return fail("after %d events: LastEventTime = %d, %v; want %d, %v", i, l, ok, last, seen)
		}
		if seen && !beforeLastChecked {
			beforeLastChecked = true
			err := eng.Evaluate(state, last-1, out)
			if !errors.Is(err, features.ErrEvaluateBeforeLastEvent) {
				return fail("after %d events: Evaluate at %d, before the latest event %d: err = %v, want ErrEvaluateBeforeLastEvent", i, last-1, last, err)
			}
		}
		prefix := []byte{0xfe, byte(i)}
		enc := eng.AppendState(slices.Clone(prefix), state)
		if !bytes.HasPrefix(enc, prefix) {
			return fail("after %d events: AppendState overwrote the buffer's prefix", i)
		}
		enc = enc[len(prefix):]
		if !bytes.Equal(enc, eng.AppendState(nil, narrow)) {
			return fail("after %d events: the state fed only the fields %v, never decoded, differs from the state continued from its decodings", i, eng.Fields())
		}
		decoded, err := eng.DecodeState(enc)
		if err != nil {
			return fail("after %d events: DecodeState: %v", i, err)
		}
		if l, ok := decoded.LastEventTime(); ok != seen || seen && l != last {
			return fail("after %d events: decoded LastEventTime = %d, %v; want %d, %v", i, l, ok, last, seen)
		}
		if _, err := eng.DecodeState(enc[:len(enc)-1]); err == nil {
			return fail("after %d events: DecodeState of a truncated state succeeded", i)
		}
		qlast := last
		if !seen {
			qlast = max(0, events[0].Time-rng.Int64N(3_600_000))
		}
		for _, t := range queryTimes(rng, feats, applied, qlast) {
			st.queries++
			if err := eng.Evaluate(state, t, out); err != nil {
				return fail("after %d events: Evaluate at %d: %v", i, t, err)
			}
			if err := eng.Evaluate(decoded, t, out2); err != nil {
				return fail("after %d events: Evaluate decoded state at %d: %v", i, t, err)
			}
			for j := range feats {
				f := &feats[j]
				want := refEvaluate(f, applied, t)
				st.values++
				if !isEmptyValue(f.agg, want) {
					st.nonEmpty++
				}
				if !out[j].Equal(want) {
					return fail("after %d events (%d applied, latest %d), at t=%d: feature %s (%s %s, window %dms, granularity %dms) = %v, reference %v\nevents in the window:\n%s",
						i, len(applied), last, t, f.name, f.agg, fieldName(f.field), f.window, f.gran, out[j], want, inWindow(f, applied, t))
				}
				if !out2[j].Equal(out[j]) {
					return fail("after %d events, at t=%d: feature %s of the decoded state = %v, of the state %v", i, t, f.name, out2[j], out[j])
				}
			}
			// Any other time of t's span gives the same values.
			from, until := eng.Span(t)
			if from > t || t >= until {
				return fail("Span(%d) = [%d, %d) does not hold it", t, from, until)
			}
			from = max(from, qlast)
			for _, t2 := range []int64{from, until - 1, from + rng.Int64N(min(until-from, 1<<40))} {
				if err := eng.Evaluate(state, t2, out2); err != nil {
					return fail("after %d events: Evaluate at %d: %v", i, t2, err)
				}
				for j := range feats {
					if !out2[j].Equal(out[j]) {
						return fail("after %d events: feature %s at %d = %v, at %d = %v, in the same span [%d, %d)", i, feats[j].name, t2, out2[j], t, out[j], from, until)
					}
				}
			}
		}
		// Continuing from the decoded state must give what continuing
		// from the state does: narrow, never decoded, is compared with it.
		if rng.IntN(2) == 0 {
			state = decoded
			st.decodedContinued++
		}
	}
	return st, nil
}

func isEmptyValue(agg string, v features.Value) bool {
	switch agg {
	case "count", "count_distinct":
		return v.Equal(features.Int(0))
	case "sum":
		return v.Equal(features.Float(0))
	}
	return v.IsNull()
}

func fieldName(i int) string {
	if i < 0 {
		return ""
	}
	return refFieldNames[i]
}

func fmtEvent(ev *features.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "te=%d p=%d o=%d", ev.Time, ev.Partition, ev.Offset)
	for i, v := range ev.Fields {
		fmt.Fprintf(&b, " %s=%v", refFieldNames[i], v)
	}
	return b.String()
}

// inWindow lists the applied events f's window holds at t, for a failure
// message.
func inWindow(f *refFeature, applied []refEvent, t int64) string {
	var b strings.Builder
	n := 0
	for i := range applied {
		e := &applied[i]
		if !f.covers(e.time, t) {
			continue
		}
		if n++; n > 40 {
			continue
		}
		fmt.Fprintf(&b, "  te=%d p=%d o=%d", e.time, e.partition, e.offset)
		if f.field >= 0 {
			fmt.Fprintf(&b, " %s=%v", refFieldNames[f.field], e.fields[f.field])
		}
		b.WriteByte('\n')
	}
	if n > 40 {
		fmt.Fprintf(&b, "  ... %d in all\n", n)
	}
	return b.String()
}

// TestCountDistinctError checks count_distinct's contract: exact below 100
// distinct values (and up to its exact threshold), and within 2% at 10,000
// distinct values in one window.
func TestCountDistinctError(t *testing.T) {
	const yaml = `project: distinct
entities:
  - name: user
    join_keys: [uid]
sources:
  - name: events
    topic: events
    event_time: ts
    schema: {uid: string, cat: string, qty: int, ts: timestamp}
feature_views:
  - name: v
    version: 1
    entity: user
    source: events
    features:
      - {name: cats, agg: count_distinct, field: cat}
      - {name: cats_1h, agg: count_distinct, field: cat, window: 1h}
      - {name: qtys_10m, agg: count_distinct, field: qty, window: 10m, granularity: 1m}
      - {name: seen_1h, agg: count_distinct, field: ts, window: 1h}
`
	defs, err := features.Parse("distinct.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := features.NewEngine(defs, defs.View("v", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []struct {
		name string
		cat  func(i int) string
		qty  func(i int) int64
	}{
		{"sequential", func(i int) string { return "c" + strconv.Itoa(i) }, func(i int) int64 { return int64(i) }},
		{"scattered", func(i int) string { return fmt.Sprintf("merchant-%08x", uint32(i)*2654435761) }, func(i int) int64 { return int64(i)*1_000_003 - 5_000_000_000 }},
		{"uuid-like", func(i int) string { return fmt.Sprintf("%08x-%04x-4000-8000-%012x", i*7919, i%65536, i) }, func(i int) int64 { return -int64(i) }},
	} {
		t.Run(set.name, func(t *testing.T) {
			// 10,000 events in one 10-minute span (inside every window at the
			// end), each value twice, out of order, on two partitions.
			const n = 10_000
			start := int64(1_700_000_000_000) - int64(1_700_000_000_000)%600_000
			state := eng.NewState()
			rng := rand.New(rand.NewPCG(7, uint64(len(set.name))))
			order := rng.Perm(2 * n)
			var maxTime int64
			out := make([]features.Value, 4)
			check := func(distinct int, exact bool) {
				t.Helper()
				if err := eng.Evaluate(state, maxTime, out); err != nil {
					t.Fatal(err)
				}
				for i, name := range []string{"cats", "cats_1h", "qtys_10m", "seen_1h"} {
					got := out[i].Int()
					if out[i].Type() != features.TypeInt {
						t.Fatalf("%s = %v, want an int", name, out[i])
					}
					want := int64(distinct)
					relErr := math.Abs(float64(got-want)) / float64(want)
					switch {
					case exact && got != want || !exact && relErr > 0.02:
						t.Errorf("%s with %d distinct values = %d (relative error %.4f)", name, distinct, got, relErr)
					case !exact:
						t.Logf("%s with %d distinct values = %d (relative error %.4f)", name, distinct, got, relErr)
					}
				}
			}
			apply := func(k int) {
				i := k % n
				te := start + int64(i)*600_000/n
				ev := features.Event{Time: te, Partition: int32(k / n), Offset: int64(k), Fields: []features.Value{
					features.String("u"), features.String(set.cat(i)), features.Int(set.qty(i)), features.Timestamp(te),
				}}
				if _, err := eng.Apply(state, &ev); err != nil {
					t.Fatal(err)
				}
				maxTime = max(maxTime, te)
			}
			// First 100 and then 127 distinct values, each twice: exact.
			for k := range 100 {
				apply(k)
				apply(k + n)
			}
			check(100, true)
			for k := 100; k < 127; k++ {
				apply(k)
				apply(k + n)
			}
			check(127, true)
			state2, err := eng.DecodeState(eng.AppendState(nil, state))
			if err != nil {
				t.Fatal(err)
			}
			state = state2
			check(127, true)
			for _, k := range order {
				if k%n >= 127 {
					apply(k)
				}
			}
			check(n, false)
			state2, err = eng.DecodeState(eng.AppendState(nil, state))
			if err != nil {
				t.Fatal(err)
			}
			state = state2
			check(n, false)
		})
	}
}
