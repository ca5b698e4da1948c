package replay

import (
	"context"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestRowsWholeSlots: a batch of rows holds whole slots, however full: the
// rows of a slot's second entity are not cut from its first's.
func TestRowsWholeSlots(t *testing.T) {
	defer SetRowsFlush(1)()
	ctx := context.Background()
	defs, off := FraudStore(t)
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		t.Fatal(err)
	}
	log := offline.NewFeatureLog(defs, eng)
	w, err := newRows(ctx, off, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC).UnixMilli()
	ev := features.Event{Time: at, Fields: []features.Value{features.String("t1"), features.String("u1"), features.String("m1"),
		features.Float(10), features.String("DE"), features.Timestamp(at)}}
	st := eng.NewState()
	if _, err := eng.Apply(st, &ev); err != nil {
		t.Fatal(err)
	}
	step := func(slot int, rows int) {
		t.Helper()
		if err := w.reach(ctx, slot); err != nil {
			t.Fatal(err)
		}
		for range rows {
			w.add(st, &ev)
		}
	}
	step(3, 0) // an entity with nothing applied
	step(5, 1)
	step(5, 1) // another entity of slot 5
	if marks, err := off.Marks(ctx, log.Dir); err != nil || len(marks) != 0 {
		t.Fatalf("marks %v, %v after rows of slot 5 only: want none written", marks, err)
	}
	step(7, 1)
	if hwm, ok, err := off.HighWaterMark(ctx, log.Dir, "test"); hwm != 6 || !ok || err != nil {
		t.Fatalf("high-water mark %d, %v, %v; want 6, slot 5's rows written at slot 7", hwm, ok, err)
	}
	if err := w.write(ctx, slots-1); err != nil {
		t.Fatal(err)
	}
	if w.written != 3 {
		t.Errorf("%d rows written, want 3", w.written)
	}
}
