package offline_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

func TestRemoveLog(t *testing.T) { eachBackend(t, testRemoveLog) }

// testRemoveLog: RemoveLog removes every file of a log, compacted ones
// included, and its streams' marks, in this process and in another; beside
// a compaction it fails with ErrLocked and changes nothing.
func testRemoveLog(t *testing.T, d *fixture) {
	ctx := context.Background()
	const dir = "events/transactions"
	if n, err := d.RemoveLog(ctx, dir); n != 0 || err != nil {
		t.Fatalf("removing a log with no files: %d, %v", n, err)
	}
	writeEvents(t, d.Dir, 2, 6)
	if _, err := d.Compact(ctx, dir, offline.CompactOptions{TargetBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	var parquet int
	for _, f := range d.files(t, dir) {
		if strings.HasSuffix(f, ".parquet") {
			parquet++
		}
	}
	before := d.files(t, dir)

	_, release, err := d.reopen(t).LockLog(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.RemoveLog(ctx, dir); !errors.Is(err, offline.ErrLocked) {
		t.Fatalf("removing a log beside a compaction: %v, want ErrLocked", err)
	}
	release()
	if after := d.files(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a refused removal changed the log: %v, was %v", after, before)
	}

	n, err := d.RemoveLog(ctx, dir)
	if err != nil || n != parquet {
		t.Fatalf("removed %d files, %v; want the %d there", n, err, parquet)
	}
	for _, f := range d.files(t, dir) {
		t.Errorf("%s left", f)
	}
	for name, dd := range map[string]*offline.Dir{"this process": d.Dir, "another": d.reopen(t)} {
		if files, err := dd.LogFiles(ctx, dir); len(files) != 0 || err != nil {
			t.Errorf("%s lists %v, %v", name, files, err)
		}
		if marks, err := dd.Marks(ctx, dir); len(marks) != 0 || err != nil {
			t.Errorf("%s has marks %v, %v", name, marks, err)
		}
		if _, ok, err := dd.HighWaterMark(ctx, dir, "transactions/0"); ok || err != nil {
			t.Errorf("%s has a high-water mark: %v", name, err)
		}
	}
	// The log is written again from scratch.
	writeEvents(t, d.Dir, 1, 1)
	if got, _ := readLog(t, d.Dir); len(got) != 10 {
		t.Errorf("%d rows after writing 10 again", len(got))
	}
	if hwm, ok, err := d.HighWaterMark(ctx, dir, "transactions/0"); hwm != 9 || !ok || err != nil {
		t.Errorf("high-water mark %d, %v, %v; want 9", hwm, ok, err)
	}
}

// TestFeatureLogRowAsOf: a row's values are as of its _event_time. An event
// applied after a later one of its entity (from another partition) gets the
// later time, since its state counts that event too; in time order, each
// row has its own event's time.
func TestFeatureLogRowAsOf(t *testing.T) {
	defs, err := features.Parse("defs.yaml", []byte(`project: p
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: s, topic: s, event_time: ts, schema: {user_id: string, ts: timestamp}}]
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: n, agg: count}, {name: n_1h, agg: count, window: 1h}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := features.NewEngine(defs, defs.View("v", 1))
	if err != nil {
		t.Fatal(err)
	}
	l := offline.NewFeatureLog(defs, eng)
	const minute = 60_000
	t0 := int64(1_795_000_000_000)
	st := eng.NewState()
	var rows [][]features.Value
	for i, at := range []int64{t0 + 9*minute, t0, t0 + 20*minute} { // the second came late
		ev := &features.Event{Time: at, Partition: int32(i % 2), Offset: int64(i), Fields: []features.Value{features.String("u"), features.Timestamp(at)}}
		if _, err := eng.Apply(st, ev); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, l.Row(st, ev))
	}
	want := [][]features.Value{
		{features.String("u"), features.Timestamp(t0 + 9*minute), features.Int(1), features.Int(1)},
		{features.String("u"), features.Timestamp(t0 + 9*minute), features.Int(2), features.Int(2)},
		{features.String("u"), features.Timestamp(t0 + 20*minute), features.Int(3), features.Int(3)},
	}
	for i := range want {
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d: %v, want %v", i, rows[i], want[i])
		}
	}
}
