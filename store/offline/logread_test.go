package offline_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// EachLogGroup hands over a compacted file's rows a row group at a time,
// the same rows as ReadLogFile in the same order, and reads on in the
// file's replacement when a compaction removes it midway: a file read a
// row group at a time, and one read whole when opened.
func TestEachLogGroup(t *testing.T) {
	defer offline.SetMergeGroupRows(25)()
	for _, whole := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprintf("read-whole=%d", whole), func(t *testing.T) {
			defer offline.SetReadWhole(whole)()
			eachBackend(t, testEachLogGroup)
		})
	}
}

func testEachLogGroup(t *testing.T, d *fixture) {
	ctx := context.Background()
	writeEvents(t, d.Dir, 1, 12)
	if _, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{TargetBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	files, err := d.LogFiles(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	// The compacted file of the first date: 60 rows, groups of 25.
	name := files[0].Name
	_, want, _ := d.readLogFile(t, name)
	if len(want) != 60 {
		t.Fatalf("%s: %d rows, want 60", name, len(want))
	}
	for _, columns := range [][]string{nil, {"txn_id", offline.ColOffset}} {
		var got [][]features.Value
		var sizes []int
		err := d.EachLogGroup(ctx, name, columns, func(cols []offline.Column, data []offline.ColumnValues) error {
			if len(cols) != len(data) || columns != nil && len(cols) != len(columns) {
				return fmt.Errorf("%d columns, %d of values, asked for %v", len(cols), len(data), columns)
			}
			sizes = append(sizes, data[0].Len())
			for r := range data[0].Len() {
				row := make([]features.Value, len(eventColumns))
				for c, col := range cols {
					row[slices.IndexFunc(eventColumns, func(e offline.Column) bool { return e.Name == col.Name })] = data[c].At(r)
				}
				got = append(got, row)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(sizes) != "[25 25 10]" {
			t.Errorf("columns %v: groups of %v rows, want [25 25 10]", columns, sizes)
		}
		for i := range want {
			if got[i][0] != want[i][0] || got[i][9] != want[i][9] || columns == nil && fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("columns %v: row %d is %v, want %v", columns, i, got[i], want[i])
			}
		}
	}

	// A compaction merges the file with new ones and removes it after the
	// first group was handed over: the reading goes on in the new file,
	// from the 26th row.
	var got [][]features.Value
	err = d.EachLogGroup(ctx, name, nil, func(_ []offline.Column, data []offline.ColumnValues) error {
		if len(got) == 0 {
			// Two: the newest file is not merged, it holds the log's
			// high-water mark.
			for first := int64(1000); first < 1020; first += 10 {
				batch := offline.Batch{Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
					Stream: "transactions/0", FirstOffset: first, LastOffset: first + 9}
				for o := first; o < first+10; o++ {
					batch.Rows = append(batch.Rows, eventRow(fmt.Sprint("late", o), 1, ms("2026-11-20T23:30:00Z")+o, 0, o))
				}
				if err := d.WriteBatch(ctx, batch); err != nil {
					return err
				}
			}
			stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{TargetBytes: 1 << 20})
			if err == nil && stats.Removed == 0 {
				err = fmt.Errorf("compaction %+v removed nothing", stats)
			}
			if err != nil {
				return err
			}
		}
		for r := range data[0].Len() {
			got = append(got, []features.Value{data[0].At(r), data[9].At(r)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows read across the compaction, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i][0] != want[i][0] || got[i][1] != want[i][9] {
			t.Fatalf("across the compaction, row %d is %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := d.ReadFile(ctx, name); err == nil {
		t.Errorf("%s still there after the compaction", name)
	}
}

// BenchmarkEachLogGroup reads back a compacted file of a million fraud
// transactions (four row groups) a row group at a time, as backfill and
// replays read the event log, and reports the heap's peak.
func BenchmarkEachLogGroup(b *testing.B) {
	const files, rows = 100, 10_000
	ctx := context.Background()
	d := diskStore(b)
	dir := writeTransactions(b, d.Dir, files, rows)
	if _, err := d.Compact(ctx, dir, offline.CompactOptions{}); err != nil {
		b.Fatal(err)
	}
	list, err := d.LogFiles(ctx, dir)
	if err != nil || len(list) != 2 { // the newest holds the high-water mark
		b.Fatalf("%d files, %v", len(list), err)
	}
	var peak uint64
	for b.Loop() {
		n := 0
		peak = max(peak, peakHeap(b, func() {
			err = d.EachLogGroup(ctx, list[0].Name, nil, func(_ []offline.Column, data []offline.ColumnValues) error {
				n += data[0].Len()
				return nil
			})
		}))
		if err != nil || n != (files-1)*rows {
			b.Fatalf("%d rows, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*(files-1)*rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// writeTransactions writes files batches of rows fraud transactions to a
// log of one date, as ingest writes them, and returns the log's directory.
func writeTransactions(b *testing.B, d *offline.Dir, files, rows int64) string {
	batch := transactionBatch(int(rows))
	for i := range files {
		batch.FirstOffset, batch.LastOffset = i*rows, i*rows+rows-1
		if err := d.WriteBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	return batch.Dir
}

// peakHeap runs fn with the timer on and returns the most the heap's
// objects took meanwhile, sampled every 2 ms, after a collection before.
func peakHeap(b *testing.B, fn func()) uint64 {
	b.StopTimer()
	runtime.GC()
	done, sampled := make(chan struct{}), make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		high := uint64(0)
		for t := time.NewTicker(2 * time.Millisecond); ; {
			metrics.Read(s)
			high = max(high, s[0].Value.Uint64())
			select {
			case <-done:
				t.Stop()
				sampled <- high
				return
			case <-t.C:
			}
		}
	}()
	b.StartTimer()
	fn()
	b.StopTimer()
	close(done)
	high := <-sampled
	b.StartTimer()
	return high
}

// A log file in a bucket is read with one request when it is small, and
// with one per row group, besides its footer's, when it is large.
func TestS3LogReads(t *testing.T) {
	defer offline.SetMergeGroupRows(25)()
	var gets atomic.Int64 // of a file's bytes
	d := s3Through(t, func(_ http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			gets.Add(1)
		}
		return false
	})
	ctx := context.Background()
	writeEvents(t, d, 1, 12)
	if _, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{TargetBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	files, err := d.LogFiles(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		whole    int64
		min, max int64
	}{{1 << 20, 1, 1}, {0, 4, 7}} { // three row groups, and the footer in one to four reads
		restore := offline.SetReadWhole(c.whole)
		gets.Store(0)
		_, rows, _, err := d.ReadLogFile(ctx, files[0].Name)
		restore()
		if n := gets.Load(); err != nil || len(rows) != 60 || n < c.min || n > c.max {
			t.Errorf("read whole up to %d bytes: %d rows, %v, in %d GETs; want 60 rows in %d to %d", c.whole, len(rows), err, n, c.min, c.max)
		}
	}
}
