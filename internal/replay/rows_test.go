package replay_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
)

// manyEntities writes events of 40 users over two partitions and two dates,
// out of time order, offsets from..to of each partition.
func manyEntities(t *testing.T, defs *features.Definitions, off *offline.Dir, from, to int) []features.Event {
	t.Helper()
	src := defs.Source("transactions")
	start := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)
	var events []features.Event
	for p := range 2 {
		b := offline.Batch{Dir: "events/transactions", Columns: offline.EventColumns(src), TimeColumn: len(src.Schema),
			Stream: fmt.Sprintf("transactions/%d", p), FirstOffset: int64(from), LastOffset: int64(to)}
		for o := from; o <= to; o++ {
			at := start.Add(time.Duration((o*53+p*17)%120) * time.Minute)
			ev := features.Event{Time: at.UnixMilli(), Partition: int32(p), Offset: int64(o), Fields: []features.Value{
				features.String(fmt.Sprintf("t%d-%d", p, o)), features.String(fmt.Sprintf("u%d", (o*7+p)%40)), features.String(fmt.Sprintf("m%d", o%5)),
				features.Float(float64(o%7) * 10), features.String([]string{"DE", "FR"}[o%2]), features.Timestamp(at.UnixMilli())}}
			events = append(events, ev)
			b.Rows = append(b.Rows, append(slices.Clone(ev.Fields),
				features.Timestamp(ev.Time), features.String("transactions"), features.Int(int64(p)), features.Int(int64(o))))
		}
		if err := off.WriteBatch(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

// featureLog returns the engine and feature log of a view.
func featureLog(t *testing.T, defs *features.Definitions, v *features.View) (*features.Engine, *offline.FeatureLog) {
	t.Helper()
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		t.Fatal(err)
	}
	return eng, offline.NewFeatureLog(defs, eng)
}

// published is a changelog's worth of states, copied as they are published.
type published map[string]*replay.Entity

func (p published) add(eng *features.Engine, ents map[string]*replay.Entity) {
	for k, e := range ents {
		p[k] = copyEntity(eng, e)
	}
}

func (p published) load(eng *features.Engine) func(context.Context, []string) (map[string]*replay.Entity, error) {
	return func(_ context.Context, keys []string) (map[string]*replay.Entity, error) {
		out := map[string]*replay.Entity{}
		for _, k := range keys {
			if e := p[k]; e != nil {
				out[k] = copyEntity(eng, e)
			}
		}
		return out, nil
	}
}

func copyEntity(eng *features.Engine, e *replay.Entity) *replay.Entity {
	st, err := eng.DecodeState(eng.AppendState(nil, e.State))
	if err != nil {
		panic(err)
	}
	return &replay.Entity{State: st, Applied: maps.Clone(e.Applied)}
}

// referenceRows applies each entity's events matching keep, in time order,
// to a copy of its state in base (or a new one), and returns the feature
// log rows, as rowKeys, and the states.
func referenceRows(eng *features.Engine, fl *offline.FeatureLog, events []features.Event, base published, keep func(features.Event) bool) ([]string, published) {
	evs := slices.Clone(events)
	slices.SortFunc(evs, func(a, b features.Event) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	states := published{}
	var rows []string
	for i := range evs {
		ev := &evs[i]
		k := ev.Fields[1].Str()
		if !keep(*ev) {
			continue
		}
		if states[k] == nil {
			if b := base[k]; b != nil {
				states[k] = copyEntity(eng, b)
			} else {
				states[k] = &replay.Entity{State: eng.NewState(), Applied: map[int32]int64{}}
			}
		}
		if ok, _ := eng.Apply(states[k].State, ev); ok {
			states[k].Applied[ev.Partition] = max(states[k].Applied[ev.Partition], ev.Offset)
			rows = append(rows, rowKey(fl.Row(states[k].State, ev)))
		}
	}
	slices.Sort(rows)
	return rows, states
}

func rowKey(row []features.Value) string {
	var b strings.Builder
	for _, v := range row {
		fmt.Fprintf(&b, "%v:%v|", v.Type(), v)
	}
	return b.String()
}

// logRows reads a feature log back, sorted as rowKeys.
func logRows(t *testing.T, off *offline.Dir, fl *offline.FeatureLog) []string {
	t.Helper()
	files, err := off.LogFiles(context.Background(), fl.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, f := range files {
		cols, rs, _, err := off.ReadLogFile(context.Background(), f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(cols, fl.Columns, func(a, b offline.Column) bool { return a.Name == b.Name && a.Type == b.Type }) {
			t.Fatalf("%s: columns %v, want %v", f.Name, cols, fl.Columns)
		}
		for _, r := range rs {
			rows = append(rows, rowKey(r))
		}
	}
	slices.Sort(rows)
	return rows
}

// TestFeatureLog: a replay logs a row per event it applies, with the
// features as of the event, as ingest would, whether it computes its
// entities at once or in buckets.
func TestFeatureLog(t *testing.T) {
	defs, v, off, all := setup(t)
	all = append(all, manyEntities(t, defs, off, 60, 159)...)
	eng, fl := featureLog(t, defs, v)
	want, _ := referenceRows(eng, fl, all, nil, func(features.Event) bool { return true })
	for _, c := range []struct{ limit, flush int64 }{{0, 32 << 20}, {1000, 32 << 20}, {0, 1}} {
		t.Run(fmt.Sprintf("limit=%d,flush=%d", c.limit, c.flush), func(t *testing.T) {
			defer replay.SetRowsFlush(c.flush)()
			limit := c.limit
			if _, err := off.RemoveLog(context.Background(), fl.Dir); err != nil {
				t.Fatal(err)
			}
			res, _ := run(t, replay.Config{Definitions: defs, View: v, Offline: off, MemoryLimit: limit, TempDir: t.TempDir(), Rows: "replay/test"})
			if limit > 0 && res.Buckets < 3 {
				t.Fatalf("%d buckets, want several", res.Buckets)
			}
			got := logRows(t, off, fl)
			if !slices.Equal(got, want) {
				t.Errorf("%d rows logged, want %d:\n%s", len(got), len(want), diff(got, want))
			}
			if res.Rows != int64(len(want)) || res.Applied != int64(len(want)) {
				t.Errorf("result says %d rows, %d applied; want %d", res.Rows, res.Applied, len(want))
			}
		})
	}
}

// TestFeatureLogRerun: a catch-up that fails part way, with some of its
// rows logged and some of their states published, then run again with the
// same stream and marks, logs each row once, though events were logged in
// between.
func TestFeatureLogRerun(t *testing.T) {
	// Rows written a bucket at a time, or at every slot.
	for _, flush := range []int64{32 << 20, 1} {
		t.Run(fmt.Sprintf("flush=%d", flush), func(t *testing.T) {
			defer replay.SetRowsFlush(flush)()
			testFeatureLogRerun(t)
		})
	}
}

func testFeatureLogRerun(t *testing.T) {
	defs, v, off, all := setup(t)
	all = append(all, manyEntities(t, defs, off, 60, 159)...)
	eng, fl := featureLog(t, defs, v)
	before := func(ev features.Event) bool { return ev.Offset < 100 }
	_, base := referenceRows(eng, fl, all, nil, before)
	want, wantStates := referenceRows(eng, fl, all, base, func(ev features.Event) bool { return !before(ev) })

	to, err := replay.LogMarks(context.Background(), off, defs.Source("transactions"))
	if err != nil {
		t.Fatal(err)
	}
	states := published{}
	states.add(eng, base)
	// About ten entities a bucket.
	cfg := replay.Config{Definitions: defs, View: v, Offline: off, MemoryLimit: 8000, TempDir: t.TempDir(),
		After: map[int32]int64{0: 99, 1: 99}, To: to, Rows: "catchup/test", Load: states.load(eng)}
	crash := errors.New("crash")
	buckets := 0
	_, err = replay.Run(context.Background(), cfg, func(b *replay.Bucket) error {
		if buckets++; buckets < 3 || len(b.Entities) < 2 {
			states.add(eng, b.Entities)
			return nil
		}
		// Half the states of the third bucket or after are published.
		keys := slices.Sorted(maps.Keys(b.Entities))
		for _, k := range keys[:len(keys)/2] {
			states.add(eng, map[string]*replay.Entity{k: b.Entities[k]})
		}
		return crash
	})
	if !errors.Is(err, crash) {
		t.Fatalf("first run: %v, want the crash", err)
	}
	if n := len(logRows(t, off, fl)); n == 0 || n >= len(want) {
		t.Fatalf("the crashed run logged %d rows of %d", n, len(want))
	}
	// Events past the marks: the next catch-up's.
	manyEntities(t, defs, off, 160, 179)
	if _, err := replay.Run(context.Background(), cfg, func(b *replay.Bucket) error {
		states.add(eng, b.Entities)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := logRows(t, off, fl); !slices.Equal(got, want) {
		t.Errorf("%d rows logged, want %d:\n%s", len(got), len(want), diff(got, want))
	}
	for k, e := range wantStates {
		if got := states[k]; got == nil || !slices.Equal(eng.AppendState(nil, got.State), eng.AppendState(nil, e.State)) || !maps.Equal(got.Applied, e.Applied) {
			t.Errorf("%s: state differs from the reference", k)
		}
	}
}

// diff lists the rows in one of got and want and not the other.
func diff(got, want []string) string {
	var b strings.Builder
	g, w := map[string]int{}, map[string]int{}
	for _, r := range got {
		g[r]++
	}
	for _, r := range want {
		w[r]++
	}
	for r, n := range g {
		if n != w[r] {
			fmt.Fprintf(&b, "logged %d times, want %d: %s\n", n, w[r], r)
		}
	}
	for r, n := range w {
		if g[r] == 0 {
			fmt.Fprintf(&b, "logged 0 times, want %d: %s\n", n, r)
		}
	}
	return b.String()
}
