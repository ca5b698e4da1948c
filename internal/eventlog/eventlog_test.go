package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/eventlog"
	"github.com/quiver-ml/quiver/store/offline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const defs = `
project: t
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: events, topic: events, format: json, event_time: ts, schema: {user_id: string, n: int, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: events, features: [{name: c, agg: count}]}
`

// logDir writes files event log files of rows events each, on several
// days, and returns the store and the source.
func logDir(t *testing.T, files, rows int) (*offline.Dir, *features.Source) {
	t.Helper()
	d, err := features.Parse("defs.yaml", []byte(defs))
	if err != nil {
		t.Fatal(err)
	}
	src := d.Source("events")
	dir, err := offline.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cols := []offline.Column{{Name: "user_id", Type: features.TypeString}, {Name: "n", Type: features.TypeInt}, {Name: "ts", Type: features.TypeTimestamp},
		{Name: "_event_time", Type: features.TypeTimestamp}, {Name: "_topic", Type: features.TypeString}, {Name: "_partition", Type: features.TypeInt}, {Name: "_offset", Type: features.TypeInt}}
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	offset := int64(0)
	for f := range files {
		b := offline.Batch{Dir: "events/events", Columns: cols, TimeColumn: 3, Stream: "events/0", FirstOffset: offset}
		for range rows {
			te := day + int64(f/3)*86_400_000 + offset
			b.Rows = append(b.Rows, []features.Value{features.String(fmt.Sprint("u", offset%7)), features.Int(offset), features.Timestamp(te),
				features.Timestamp(te), features.String("events"), features.Int(0), features.Int(offset)})
			offset++
		}
		b.LastOffset = offset - 1
		if err := dir.WriteBatch(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return dir, src
}

// Each hands over every event of every file, in the files' order, though
// it decodes files ahead on other goroutines.
func TestEachInOrder(t *testing.T) {
	dir, src := logDir(t, 12, 25)
	// The order: LogFiles' files, read one after the other.
	files, err := dir.LogFiles(context.Background(), "events/events")
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, f := range files {
		_, rows, _, err := dir.ReadLogFile(context.Background(), f.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			want = append(want, r[6].Int())
		}
	}
	if len(want) != 300 {
		t.Fatalf("%d events written, want 300", len(want))
	}
	// All fields, or only n: the others null.
	for _, fields := range [][]int{nil, {src.Field("n")}} {
		var got []int64
		err = eventlog.Each(context.Background(), dir, src, fields, func(ev *features.Event) error {
			if n := ev.Fields[src.Field("n")].Int(); n != ev.Offset {
				return fmt.Errorf("event at offset %d has n = %d", ev.Offset, n)
			}
			if user := ev.Fields[src.Field("user_id")]; user.IsNull() != (fields != nil) {
				return fmt.Errorf("reading fields %v, event at offset %d has user_id %v", fields, ev.Offset, user)
			}
			got = append(got, ev.Offset)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Each(fields %v) gave offsets\n%v\nwant\n%v", fields, got, want)
		}
	}
}

// An error from fn ends Each at once, with no goroutine left behind
// (TestMain checks), as does a cancelled context.
func TestEachStops(t *testing.T) {
	dir, src := logDir(t, 20, 10)
	stop := errors.New("stop")
	n := 0
	err := eventlog.Each(context.Background(), dir, src, nil, func(*features.Event) error {
		if n++; n == 35 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 35 {
		t.Errorf("Each = %v after %d events, want %v after 35", err, n, stop)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = eventlog.Each(ctx, dir, src, nil, func(*features.Event) error {
		if n++; n == 15 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n > 20 {
		t.Errorf("Each = %v after %d events, want %v within the second file", err, n, context.Canceled)
	}
}

// EachParallel hands over every file once, its events in order, and stops
// at fn's first error with no goroutine left behind.
func TestEachParallel(t *testing.T) {
	dir, src := logDir(t, 12, 25)
	n, user := src.Field("n"), src.Field("user_id")
	var mu sync.Mutex
	seen := map[int64]bool{} // offsets
	files := map[string]bool{}
	err := eventlog.EachParallel(context.Background(), dir, src, []int{n}, 3, func(w int, b *eventlog.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if w < 0 || w >= 3 {
			return fmt.Errorf("worker %d of 3", w)
		}
		if files[b.Name] {
			return fmt.Errorf("%s twice", b.Name)
		}
		files[b.Name] = true
		if b.Field(user) != nil {
			return fmt.Errorf("%s: user_id read, only n asked for", b.Name)
		}
		var ev features.Event
		for i := range b.Len {
			b.Event(i, &ev)
			if got := ev.Fields[n].Int(); got != ev.Offset || b.Field(n).At(i) != ev.Fields[n] {
				return fmt.Errorf("event at offset %d has n = %d", ev.Offset, got)
			}
			if !ev.Fields[user].IsNull() || len(ev.Fields) != len(src.Schema) {
				return fmt.Errorf("event at offset %d has fields %v, want user_id null", ev.Offset, ev.Fields)
			}
			if seen[ev.Offset] {
				return fmt.Errorf("offset %d twice", ev.Offset)
			}
			// A file holds 25 consecutive offsets, in order.
			if (ev.Offset%25 == 0) != (i == 0) || i > 0 && !seen[ev.Offset-1] {
				return fmt.Errorf("offset %d is event %d of %s", ev.Offset, i, b.Name)
			}
			seen[ev.Offset] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 300 || len(files) != 12 {
		t.Errorf("%d events in %d files, want 300 in 12", len(seen), len(files))
	}

	stop := errors.New("stop")
	var calls atomic.Int64
	err = eventlog.EachParallel(context.Background(), dir, src, nil, 2, func(int, *eventlog.Batch) error {
		if calls.Add(1) == 4 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls.Load() >= 12 {
		t.Errorf("EachParallel = %v after %d files, want %v before the end", err, calls.Load(), stop)
	}
}

// A compacted file is read a row group at a time: Each hands over its
// events in order, EachParallel a batch per row group, and an error in
// fn midway through a file ends Each with no goroutine left behind.
func TestEachRowGroups(t *testing.T) {
	// Three files of a day compacted into one of 270,000 rows: a row group
	// of 262,144 and one of 7,856. The fourth, on the next day, holds the
	// log's high-water mark and stays.
	dir, src := logDir(t, 4, 90_000)
	ctx := context.Background()
	if _, err := dir.Compact(ctx, "events/events", offline.CompactOptions{}); err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	err := eventlog.Each(ctx, dir, src, []int{src.Field("n")}, func(ev *features.Event) error {
		if ev.Offset != next || ev.Fields[src.Field("n")].Int() != next {
			return fmt.Errorf("event at offset %d (n %v), want %d", ev.Offset, ev.Fields[src.Field("n")], next)
		}
		next++
		return nil
	})
	if err != nil || next != 360_000 {
		t.Fatalf("Each = %v after %d events, want 360000", err, next)
	}

	var mu sync.Mutex
	var sizes []int
	seen := make([]bool, 360_000)
	err = eventlog.EachParallel(ctx, dir, src, nil, 2, func(_ int, b *eventlog.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, b.Len)
		for i := range b.Len {
			if seen[b.Offset(i)] {
				return fmt.Errorf("offset %d twice", b.Offset(i))
			}
			seen[b.Offset(i)] = true
		}
		return nil
	})
	slices.Sort(sizes)
	if err != nil || fmt.Sprint(sizes) != "[7856 90000 262144]" || slices.Contains(seen, false) {
		t.Errorf("EachParallel = %v, batches of %v events, all seen %v; want [7856 90000 262144], all", err, sizes, !slices.Contains(seen, false))
	}

	stop := errors.New("stop")
	n := 0
	err = eventlog.Each(ctx, dir, src, nil, func(*features.Event) error {
		if n++; n == 262_150 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Each = %v, want %v", err, stop)
	}
}
