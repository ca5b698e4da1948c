package replay_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
)

func setup(t *testing.T) (*features.Definitions, *features.View, *offline.Dir, []features.Event) {
	defs, off := replay.FraudStore(t)
	src := defs.Source("transactions")
	cols := offline.EventColumns(src)
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var events []features.Event
	for p := range 2 {
		b := offline.Batch{Dir: "events/transactions", Columns: cols, TimeColumn: len(src.Schema), Stream: fmt.Sprintf("transactions/%d", p), FirstOffset: 0, LastOffset: 59}
		for o := range 60 {
			// Out of time order within a partition: offsets and times differ.
			at := start.Add(time.Duration((o*37)%60) * time.Minute)
			ev := features.Event{Time: at.UnixMilli(), Partition: int32(p), Offset: int64(o), Fields: []features.Value{
				features.String(fmt.Sprintf("t%d-%d", p, o)), features.String(fmt.Sprintf("u%d", o%3)), features.String(fmt.Sprintf("m%d", o%5)),
				features.Float(float64(o%7) * 10), features.String([]string{"DE", "FR"}[o%2]), features.Timestamp(at.UnixMilli())}}
			events = append(events, ev)
			b.Rows = append(b.Rows, append(append([]features.Value(nil), ev.Fields...),
				features.Timestamp(ev.Time), features.String("transactions"), features.Int(int64(p)), features.Int(int64(o))))
		}
		if err := off.WriteBatch(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return defs, defs.View("user_txn", 1), off, events
}

// reference applies the events matching keep to fresh states, in the
// given order; an entity none of whose events the view applies has none.
func reference(t *testing.T, eng *features.Engine, events []features.Event, keep func(features.Event) bool) map[string]string {
	states := map[string]*features.State{}
	for i := range events {
		ev := &events[i]
		if !keep(*ev) {
			continue
		}
		k := ev.Fields[1].Str()
		st := states[k]
		if st == nil {
			st = eng.NewState()
		}
		if ok, _ := eng.Apply(st, ev); ok {
			states[k] = st
		}
	}
	out := map[string]string{}
	for k, st := range states {
		out[k] = string(eng.AppendState(nil, st))
	}
	return out
}

func encoded(eng *features.Engine, ents map[string]*replay.Entity) map[string]string {
	out := map[string]string{}
	for k, e := range ents {
		out[k] = string(eng.AppendState(nil, e.State))
	}
	return out
}

// run replays and returns the states of every bucket, checking that each
// entity is of exactly one bucket.
func run(t *testing.T, cfg replay.Config) (*replay.Result, map[string]*replay.Entity) {
	t.Helper()
	var buckets []*replay.Bucket
	res, err := replay.Run(context.Background(), cfg, func(b *replay.Bucket) error {
		buckets = append(buckets, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != res.Buckets {
		t.Fatalf("%d buckets handed over, the result says %d", len(buckets), res.Buckets)
	}
	all := map[string]*replay.Entity{}
	for _, b := range buckets {
		for k, e := range b.Entities {
			all[k] = e
			if !b.Has(k) {
				t.Errorf("bucket with %q says it does not have it", k)
			}
		}
	}
	for k := range all {
		n := 0
		for _, b := range buckets {
			if b.Has(k) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q is of %d buckets, want one", k, n)
		}
	}
	if len(all) != res.Entities {
		t.Errorf("%d entities handed over, the result says %d", len(all), res.Entities)
	}
	return res, all
}

// load returns a Config.Load of the states in ents.
func load(ents map[string]*replay.Entity) func(context.Context, []string) (map[string]*replay.Entity, error) {
	return func(_ context.Context, keys []string) (map[string]*replay.Entity, error) {
		out := map[string]*replay.Entity{}
		for _, k := range keys {
			if e := ents[k]; e != nil {
				out[k] = e
			}
		}
		return out, nil
	}
}

func TestRun(t *testing.T) {
	defs, v, off, events := setup(t)
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		t.Fatal(err)
	}
	var progress int64
	res, ents := run(t, replay.Config{Definitions: defs, View: v, Offline: off, Progress: func(n int64) { progress += n }})
	if progress != 120 {
		t.Errorf("progress heard of %d events read, want 120", progress)
	}
	if want := reference(t, eng, events, func(features.Event) bool { return true }); !maps.Equal(encoded(eng, ents), want) {
		t.Error("replayed states differ from the engine's over every event")
	}
	if res.Events != 120 || res.Covered[0] != 59 || res.Covered[1] != 59 || res.Buckets != 1 {
		t.Errorf("read %d events covering %v in %d buckets, want 120 covering 59 and 59 in one", res.Events, res.Covered, res.Buckets)
	}
	for k, e := range ents {
		if e.Applied[0] < 50 || e.Applied[1] < 50 {
			t.Errorf("%s: applied offsets %v, want each partition's latest applied event", k, e.Applied)
		}
	}

	// A catch-up: states with the events up to offset 29 of each partition,
	// then the rest from the log, equal the whole replay; events at or below
	// an entity's offsets are not applied twice.
	if _, first := run(t, replay.Config{Definitions: defs, View: v, Offline: off, Until: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}); len(first) != 0 {
		t.Fatalf("a replay of nothing: %d entities", len(first))
	}
	half := map[string]*replay.Entity{}
	for k := range ents {
		half[k] = &replay.Entity{State: eng.NewState(), Applied: map[int32]int64{}}
	}
	for i := range events {
		ev := &events[i]
		if ev.Offset <= 29 {
			e := half[ev.Fields[1].Str()]
			if ok, _ := eng.Apply(e.State, ev); ok {
				e.Applied[ev.Partition] = max(e.Applied[ev.Partition], ev.Offset)
			}
		}
	}
	_, caught := run(t, replay.Config{Definitions: defs, View: v, Offline: off,
		After: map[int32]int64{0: 20, 1: 20}, // earlier than the states' own offsets: those decide
		Load:  load(half)})
	if !maps.Equal(encoded(eng, caught), encoded(eng, ents)) {
		t.Error("a catch-up from half the events differs from the whole replay")
	}

	// Time bounds.
	from, to := time.Date(2026, 11, 20, 0, 10, 0, 0, time.UTC), time.Date(2026, 11, 20, 0, 40, 0, 0, time.UTC)
	bounded, boundedEnts := run(t, replay.Config{Definitions: defs, View: v, Offline: off, Since: from, Until: to})
	// Until stops each partition before its first event at or after it;
	// later offsets, even of earlier times, are a catch-up's.
	cut := map[int32]int64{0: 60, 1: 60}
	for _, ev := range events {
		if ev.Time >= to.UnixMilli() {
			cut[ev.Partition] = min(cut[ev.Partition], ev.Offset)
		}
	}
	want := reference(t, eng, events, func(ev features.Event) bool { return ev.Time >= from.UnixMilli() && ev.Offset < cut[ev.Partition] })
	if !maps.Equal(encoded(eng, boundedEnts), want) {
		t.Error("a bounded replay differs from the engine's over the events in the bounds")
	}
	if bounded.Covered[0] != cut[0]-1 || bounded.Covered[1] != cut[1]-1 {
		t.Errorf("a bounded replay covers %v, want %v less one", bounded.Covered, cut)
	}
	// And a catch-up from there gives the whole replay, for events at or
	// after --from.
	_, rest := run(t, replay.Config{Definitions: defs, View: v, Offline: off, After: bounded.Covered, Since: from, Load: load(boundedEnts)})
	if want := reference(t, eng, events, func(ev features.Event) bool { return ev.Time >= from.UnixMilli() }); !maps.Equal(encoded(eng, rest), want) {
		t.Error("a bounded replay and its catch-up differ from a replay of every event since --from")
	}
}

// TestFilteredOutEntity: an entity whose events all fail the view's filter
// (a refund, amount 0, for user_txn's e.amount > 0.0) gets no state from a
// replay, as from ingest: serve answers NOT_FOUND, and a training set null,
// not a count of 0.
func TestFilteredOutEntity(t *testing.T) {
	defs, v, off, events := setup(t)
	src := defs.Source("transactions")
	b := offline.Batch{Dir: "events/transactions", Columns: offline.EventColumns(src), TimeColumn: len(src.Schema), Stream: "transactions/2", FirstOffset: 0, LastOffset: 1}
	at := time.Date(2026, 11, 20, 0, 5, 0, 0, time.UTC)
	for o := range 2 {
		ev := features.Event{Time: at.UnixMilli(), Partition: 2, Offset: int64(o), Fields: []features.Value{
			features.String(fmt.Sprintf("r%d", o)), features.String("refunded"), features.String("m1"),
			features.Float(0), features.String("DE"), features.Timestamp(at.UnixMilli())}}
		events = append(events, ev)
		b.Rows = append(b.Rows, append(append([]features.Value(nil), ev.Fields...),
			features.Timestamp(ev.Time), features.String("transactions"), features.Int(2), features.Int(int64(o))))
	}
	if err := off.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		t.Fatal(err)
	}
	res, ents := run(t, replay.Config{Definitions: defs, View: v, Offline: off})
	if ents["refunded"] != nil || res.Entities != 3 {
		t.Errorf("%d entities (refunded: %v), want the three users with an applied event only", res.Entities, ents["refunded"] != nil)
	}
	if want := reference(t, eng, events, func(features.Event) bool { return true }); !maps.Equal(encoded(eng, ents), want) {
		t.Error("replayed states differ from the engine's over every event")
	}
}

// TestRunSpilled: a replay whose events take more than its memory limit
// spills them and computes its entities in buckets, with the states of a
// replay in memory, and leaves no file behind; a catch-up loads each
// bucket's states once.
func TestRunSpilled(t *testing.T) {
	defs, v, off, events := setup(t)
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		t.Fatal(err)
	}
	_, whole := run(t, replay.Config{Definitions: defs, View: v, Offline: off})
	tmp := t.TempDir()
	// Four events' worth: the 120 events are spread over every slot.
	res, ents := run(t, replay.Config{Definitions: defs, View: v, Offline: off, MemoryLimit: 1000, TempDir: tmp})
	if res.Buckets < 3 || res.Events != 120 {
		t.Errorf("%d buckets, %d events read; want several, 120", res.Buckets, res.Events)
	}
	if !maps.Equal(encoded(eng, ents), encoded(eng, whole)) {
		t.Error("states computed in buckets differ from those computed at once")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("spill files left behind: %v", left)
	}

	// Half the events applied, then the rest caught up in buckets.
	half := map[string]*replay.Entity{}
	for i := range events {
		ev := &events[i]
		if ev.Offset > 29 {
			continue
		}
		e := half[ev.Fields[1].Str()]
		if e == nil {
			e = &replay.Entity{State: eng.NewState(), Applied: map[int32]int64{}}
			half[ev.Fields[1].Str()] = e
		}
		if ok, _ := eng.Apply(e.State, ev); ok {
			e.Applied[ev.Partition] = max(e.Applied[ev.Partition], ev.Offset)
		}
	}
	loaded := map[string]int{}
	_, caught := run(t, replay.Config{Definitions: defs, View: v, Offline: off, After: map[int32]int64{0: 29, 1: 29}, MemoryLimit: 1000, TempDir: tmp,
		Load: func(ctx context.Context, keys []string) (map[string]*replay.Entity, error) {
			for _, k := range keys {
				loaded[k]++
			}
			return load(half)(ctx, keys)
		}})
	if !maps.Equal(encoded(eng, caught), encoded(eng, whole)) {
		t.Error("a catch-up in buckets differs from the whole replay")
	}
	for k, n := range loaded {
		if n != 1 {
			t.Errorf("%q loaded %d times", k, n)
		}
	}
	if len(loaded) != len(whole) {
		t.Errorf("%d entities loaded, want %d", len(loaded), len(whole))
	}
}

// TestCheckLog: a store without the source's event log is refused, naming
// the source and the store, though Run replays it into nothing (as ingest
// needs for a source with no events yet).
func TestCheckLog(t *testing.T) {
	defs, v, off, _ := setup(t)
	ctx := context.Background()
	src := defs.Source(v.Source)
	if err := replay.CheckLog(ctx, off, src); err != nil {
		t.Errorf("a store with the log: %v", err)
	}
	root := t.TempDir()
	empty, err := offline.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	err = replay.CheckLog(ctx, empty, src)
	if !errors.Is(err, replay.ErrNoEventLog) || !strings.Contains(err.Error(), "source transactions") || !strings.Contains(err.Error(), "file://"+root) {
		t.Errorf("a store without the log: %v; want ErrNoEventLog naming the source and the store", err)
	}
	if _, ents := run(t, replay.Config{Definitions: defs, View: v, Offline: empty}); len(ents) != 0 {
		t.Errorf("Run on a store without the log: %d entities", len(ents))
	}
}

func TestMarker(t *testing.T) {
	_, v, off, _ := setup(t)
	ctx := context.Background()
	if _, ok, err := replay.ReadMarker(ctx, off, v); ok || err != nil {
		t.Fatalf("a marker before any: %v, %v", ok, err)
	}
	pending := replay.Marker{Since: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	want := replay.Marker{Covered: map[int32]int64{0: 59, 3: 1 << 40}}
	begun := replay.Marker{Covered: want.Covered, To: map[int32]int64{0: 70, 3: 1<<40 + 1}, Rows: "catchup/x"}
	for _, m := range []replay.Marker{pending, want, begun, want} { // replaced each time
		if err := replay.WriteMarker(ctx, off, v, m); err != nil {
			t.Fatal(err)
		}
		got, ok, err := replay.ReadMarker(ctx, off, v)
		if err != nil || !ok || !maps.Equal(got.Covered, m.Covered) || !got.Since.Equal(m.Since) || !maps.Equal(got.To, m.To) || got.Rows != m.Rows {
			t.Fatalf("marker %+v, %v, %v; want %+v", got, ok, err, m)
		}
	}
	if err := replay.RemoveMarker(ctx, off, v); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := replay.ReadMarker(ctx, off, v); ok {
		t.Fatal("the marker is still there")
	}
}
