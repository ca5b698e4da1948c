package offline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// writeEvents writes n batches of 10 rows per stream of partitions, over
// two dates, and returns every row's (stream, offset).
func writeEvents(t testing.TB, d *offline.Dir, partitions, n int) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for b := range n {
		for p := range partitions {
			batch := offline.Batch{Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
				Stream: fmt.Sprintf("transactions/%d", p), FirstOffset: int64(b * 10), LastOffset: int64(b*10 + 9)}
			for o := b * 10; o < b*10+10; o++ {
				at := ms("2026-11-20T23:00:00Z") + int64(o)*int64(time.Minute/time.Millisecond)
				batch.Rows = append(batch.Rows, eventRow(fmt.Sprintf("t%d-%d", p, o), 1, at, int32(p), int64(o)))
				want[fmt.Sprintf("%d/%d", p, o)] = true
			}
			if err := d.WriteBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	return want
}

// readLog reads every row LogFiles lists and returns their (partition,
// offset), failing on a row read twice.
func readLog(t testing.TB, d *offline.Dir) (map[string]bool, int) {
	t.Helper()
	files, err := d.LogFiles(context.Background(), "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range files {
		_, rows, _, err := d.ReadLogFile(context.Background(), f.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			k := fmt.Sprintf("%d/%d", r[8].Int(), r[9].Int())
			if got[k] {
				t.Fatalf("row %s read twice", k)
			}
			got[k] = true
		}
	}
	return got, len(files)
}

func TestCompact(t *testing.T) { eachBackend(t, testCompact) }

func testCompact(t *testing.T, d *fixture) {
	want := writeEvents(t, d.Dir, 2, 12)
	before := map[string]string{}
	for p := range 2 {
		stream := fmt.Sprintf("transactions/%d", p)
		before[stream] = hwm(t, d.Dir, "events/transactions", stream)
	}
	_, filesBefore := readLog(t, d.Dir)

	stats, err := d.Compact(context.Background(), "events/transactions", offline.CompactOptions{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	got, filesAfter := readLog(t, d.Dir)
	if len(got) != len(want) {
		t.Fatalf("%d rows after compaction, want %d", len(got), len(want))
	}
	if stats.Written == 0 || filesAfter >= filesBefore {
		t.Fatalf("compaction wrote %d files: %d files listed before, %d after", stats.Written, filesBefore, filesAfter)
	}
	t.Logf("%d files became %d: %+v", filesBefore, filesAfter, stats)
	// The replaced files stay for readers that listed them, hidden.
	if n := len(d.files(t, "events/transactions")); n != filesBefore+stats.Written {
		t.Errorf("%d files on disk within the grace period, want %d", n, filesBefore+stats.Written)
	}
	// High-water marks stay, in this Dir and in a new one.
	for stream, mark := range before {
		for _, dir := range []*offline.Dir{d.Dir, d.reopen(t)} {
			if got := hwm(t, dir, "events/transactions", stream); got != mark {
				t.Errorf("%s: high-water mark %s after compaction, was %s", stream, got, mark)
			}
		}
	}

	// A second run with no grace removes the replaced files, and merges
	// nothing more.
	stats, err = d.Compact(context.Background(), "events/transactions", offline.CompactOptions{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Removed == 0 {
		t.Errorf("no replaced file removed: %+v", stats)
	}
	got, files := readLog(t, d.Dir)
	if fresh, _ := readLog(t, d.reopen(t)); len(fresh) != len(want) {
		t.Errorf("another process reads %d rows after the compaction, want %d", len(fresh), len(want))
	}
	if onDisk := len(d.files(t, "events/transactions")); len(got) != len(want) || files != onDisk {
		t.Errorf("%d rows in %d files, %d stored; want %d rows and no hidden file", len(got), files, onDisk, len(want))
	}
}

// Without a grace period (the default), the replaced files go as their
// replacement appears: a reader of the bare directory, as DuckDB or pyarrow
// read it, counts each row once right after compaction, and a reader that
// listed the log before reads a removed file's rows in its replacement.
// TestCompactRemovesAtOnce also writes compacted files in row groups of
// 25 rows, so that the second round reads files of several.
func TestCompactRemovesAtOnce(t *testing.T) {
	defer offline.SetMergeGroupRows(25)()
	eachBackend(t, testCompactRemovesAtOnce)
}

func testCompactRemovesAtOnce(t *testing.T, d *fixture) {
	want := writeEvents(t, d.Dir, 2, 12)
	ctx := context.Background()
	stale, err := d.LogFiles(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // the second merges the first's files with others
		if round == 1 {
			for k := range writeEvents(t, d.Dir, 3, 14) { // more partitions, more rows
				want[k] = true
			}
		}
		stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{TargetBytes: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		if stats.Written == 0 || stats.Removed == 0 {
			t.Fatalf("round %d: %+v: want files merged and the replaced removed", round, stats)
		}
	}
	// The bare directory: every Parquet file, read by parquet-go's own
	// reader.
	rows := int64(0)
	stored, grouped := 0, 0
	for _, name := range d.files(t, "events/transactions") {
		if !strings.HasSuffix(name, ".parquet") || strings.Contains(name, "/.tmp-") {
			continue
		}
		stored++
		b, err := d.ReadFile(ctx, "events/transactions/"+name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		rows += f.NumRows()
		if _, compacted := f.Lookup(offline.MetaReplaces); compacted {
			for _, g := range f.RowGroups() {
				if n := g.NumRows(); n > 25 {
					t.Errorf("%s: a row group of %d rows, want at most 25", name, n)
				}
			}
			if len(f.RowGroups()) > 1 {
				grouped++
			}
		}
	}
	if grouped == 0 {
		t.Error("no compacted file of several row groups")
	}
	if rows != int64(len(want)) {
		t.Errorf("the directory's %d Parquet files hold %d rows, want %d: each once", stored, rows, len(want))
	}
	if _, listed := readLog(t, d.Dir); listed != stored {
		t.Errorf("%d files listed, %d stored: want no replaced file left", listed, stored)
	}
	// The listing from before the compactions: every file read, most of
	// them in a replacement, each row once.
	got := map[string]bool{}
	replaced := 0
	for _, f := range stale {
		_, rows, meta, err := d.ReadLogFile(ctx, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if meta == nil {
			replaced++
		}
		for _, r := range rows {
			k := fmt.Sprintf("%d/%d", r[8].Int(), r[9].Int())
			if got[k] {
				t.Fatalf("row %s read twice", k)
			}
			got[k] = true
		}
	}
	if len(got) != 24*10 || replaced == 0 {
		t.Errorf("the listing from before: %d rows read, %d files in a replacement; want 240 rows, most files replaced", len(got), replaced)
	}
}

// TestCompactBesideWriterAndReaders: a writer keeps adding batches (as
// ingest does) and readers keep listing and reading the log while two
// compactors run again and again: no reader ever reads a row twice or
// misses a row written before it listed, and the high-water marks only go
// up.
func TestCompactBesideWriterAndReaders(t *testing.T) {
	eachBackend(t, testCompactBesideWriterAndReaders)
}

func testCompactBesideWriterAndReaders(t *testing.T, d *fixture) {
	var written atomic.Int64 // rows whose batch is complete
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	wg.Go(func() {
		for b := 0; ctx.Err() == nil && b < 200; b++ {
			for p := range 2 {
				batch := offline.Batch{Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
					Stream: fmt.Sprintf("transactions/%d", p), FirstOffset: int64(b * 5), LastOffset: int64(b*5 + 4)}
				for o := b * 5; o < b*5+5; o++ {
					batch.Rows = append(batch.Rows, eventRow("x", 1, ms("2026-11-20T23:59:00Z")+int64(o)*1000, int32(p), int64(o)))
				}
				if err := d.WriteBatch(ctx, batch); err != nil {
					t.Error(err)
					return
				}
				written.Add(5)
			}
		}
		stop()
	})
	reader := d.reopen(t) // another process's view
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				before := written.Load()
				got, _ := readLog(t, reader)
				if int64(len(got)) < before {
					t.Errorf("read %d rows, %d were written before listing", len(got), before)
					return
				}
			}
		})
	}
	// Two compactors, as two processes: a manual run beside the scheduled
	// one. One waits while the other holds the log.
	var compactions, locked atomic.Int64
	for _, c := range []*offline.Dir{d.Dir, d.reopen(t)} {
		wg.Go(func() {
			for ctx.Err() == nil {
				// No grace period: readers read files removed since they
				// listed them in their replacements.
				_, err := c.Compact(context.Background(), "events/transactions", offline.CompactOptions{TargetBytes: 64 << 10})
				if errors.Is(err, offline.ErrLocked) {
					locked.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					stop()
					return
				}
				compactions.Add(1)
			}
		})
	}
	wg.Wait()
	got, _ := readLog(t, d.Dir)
	if int64(len(got)) != written.Load() {
		t.Errorf("%d rows at the end, %d written", len(got), written.Load())
	}
	t.Logf("%d compactions (%d refused, the log locked) beside %d rows written", compactions.Load(), locked.Load(), written.Load())
	for p := range 2 {
		if m := hwm(t, d.reopen(t), "events/transactions", fmt.Sprintf("transactions/%d", p)); m != "999" {
			t.Errorf("partition %d: high-water mark %s, want 999", p, m)
		}
	}
}

// A batch caught half in place (a crash between the renames of its dates'
// files) is not listed: its rows are about to be written again.
func TestLogFilesSkipIncompleteBatch(t *testing.T) { eachBackend(t, testLogFilesSkipIncompleteBatch) }

func testLogFilesSkipIncompleteBatch(t *testing.T, d *fixture) {
	writeEvents(t, d.Dir, 1, 1)
	batch := offline.Batch{Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
		Stream: "transactions/0", FirstOffset: 10, LastOffset: 11, Rows: [][]features.Value{
			eventRow("a", 1, ms("2026-11-21T23:59:00Z"), 0, 10), eventRow("b", 1, ms("2026-11-22T00:01:00Z"), 0, 11)}}
	if err := d.WriteBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for _, f := range d.files(t, "events/transactions") {
		if strings.HasPrefix(f, "date=2026-11-22/") {
			if err := d.RemoveFile(context.Background(), "events/transactions/"+f); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, _ := readLog(t, d.reopen(t))
	if len(got) != 10 || got["0/10"] {
		t.Errorf("read %d rows (offset 10: %v), want the 10 of the complete batch only", len(got), got["0/10"])
	}
}

// A writer or compactor killed while it writes leaves its temporary file in
// the date partition. Compaction removes those untouched for longer than
// both its grace period and an hour, and no other: a fresh one may be a
// live writer's, about to be put in place.
func TestCompactRemovesStaleTempFiles(t *testing.T) {
	d := diskStore(t)
	want := writeEvents(t, d.Dir, 2, 12) // over two dates
	ctx := context.Background()
	log := filepath.Join(d.root, "events", "transactions")
	now := time.Now()
	temps := []struct {
		name string
		age  time.Duration
	}{
		{"date=2026-11-20/.tmp-1001", 48 * time.Hour}, // a killed compactor's
		{"date=2026-11-21/.tmp-1002", 3 * time.Hour},  // a killed writer's
		{"date=2026-11-25/.tmp-1003", 48 * time.Hour}, // a writer killed writing a new date's first file
		{"date=2026-11-20/.tmp-1004", 0},              // a live writer's
		{"date=2026-11-21/.tmp-1005", 10 * time.Minute},
	}
	if err := os.Mkdir(filepath.Join(log, "date=2026-11-25"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tmp := range temps {
		p := filepath.Join(log, filepath.FromSlash(tmp.name))
		if err := os.WriteFile(p, []byte("PAR1 half written"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-tmp.age), now.Add(-tmp.age)); err != nil {
			t.Fatal(err)
		}
	}
	present := func() map[string]bool {
		t.Helper()
		got := map[string]bool{}
		for _, f := range d.files(t, "events/transactions") {
			if strings.Contains(f, "/.tmp-") {
				got[f] = true
			}
		}
		return got
	}

	// Within the grace period, every temporary file stays.
	stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{Grace: 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := present(); len(got) != len(temps) || stats.Temps != 0 {
		t.Errorf("with a grace period of 72h: %d temporary files removed, %v left; want all %d left", stats.Temps, got, len(temps))
	}

	// Without one (the default), those older than an hour go.
	stats, err = d.Compact(ctx, "events/transactions", offline.CompactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := present()
	for _, tmp := range temps {
		if stale := tmp.age > time.Hour; got[tmp.name] == stale {
			t.Errorf("%s, last written %v ago: present %v after compaction, want %v", tmp.name, tmp.age, got[tmp.name], !stale)
		}
	}
	if stats.Temps != 3 {
		t.Errorf("%+v: want 3 temporary files removed", stats)
	}
	for _, dir := range []*offline.Dir{d.Dir, d.reopen(t)} {
		if rows, _ := readLog(t, dir); len(rows) != len(want) {
			t.Errorf("%d rows after compaction, want %d", len(rows), len(want))
		}
	}
}

// One compaction of a log at a time, whatever the process: another one
// fails with ErrLocked, naming the holder, and changes nothing; once the
// lock is released the next one runs and leaves no lock behind.
func TestCompactLock(t *testing.T) { eachBackend(t, testCompactLock) }

func testCompactLock(t *testing.T, d *fixture) {
	ctx := context.Background()
	writeEvents(t, d.Dir, 2, 12)
	before := d.files(t, "events/transactions")
	keep, release, err := d.reopen(t).LockLog(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Compact(ctx, "events/transactions", offline.CompactOptions{})
	if !errors.Is(err, offline.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("compaction beside another: %v, want ErrLocked naming the holder", err)
	}
	if _, _, err := d.reopen(t).LockLog(ctx, "events/transactions"); !errors.Is(err, offline.ErrLocked) {
		t.Fatalf("a second lock: %v, want ErrLocked", err)
	}
	if err := keep(ctx); err != nil {
		t.Fatalf("the holder's lock: %v", err)
	}
	var lockFiles []string
	for _, f := range d.files(t, "events/transactions") {
		if !slices.Contains(before, f) {
			lockFiles = append(lockFiles, f)
		}
	}
	if len(lockFiles) != 1 || !strings.HasPrefix(lockFiles[0], "_compacting.") {
		t.Fatalf("files the lock added: %v, want one _compacting.<generation>", lockFiles)
	}
	release()
	stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{})
	if err != nil || stats.Written == 0 {
		t.Fatalf("compaction once the lock is released: %+v, %v", stats, err)
	}
	for _, f := range d.files(t, "events/transactions") {
		if strings.HasPrefix(f, "_compacting.") {
			t.Errorf("%s left after the compaction", f)
		}
	}
}

// A dead compactor's lock, not renewed for a minute, is taken over; the
// compactor, had it only stalled, finds out before it changes anything more.
func TestCompactLockTakenOver(t *testing.T) {
	d := diskStore(t)
	ctx := context.Background()
	writeEvents(t, d.Dir, 2, 12)
	keep, _, err := d.reopen(t).LockLog(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(d.root, "events", "transactions", "_compacting.1")
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	if stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{}); err != nil || stats.Written == 0 {
		t.Fatalf("compaction beside a stale lock: %+v, %v", stats, err)
	}
	if _, err := os.Stat(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale lock is still there: %v", err)
	}
	if err := keep(ctx); !errors.Is(err, offline.ErrLocked) {
		t.Errorf("the stalled holder renewing: %v, want ErrLocked", err)
	}
}

// After a schema change (here, a field added), an older file merges with
// the older ones and the newer files with each other: they do not wait
// behind an older file for ever, each run grouping them the same way.
func TestCompactAfterSchemaChange(t *testing.T) { eachBackend(t, testCompactAfterSchemaChange) }

func testCompactAfterSchemaChange(t *testing.T, d *fixture) {
	ctx := context.Background()
	older := slices.Delete(slices.Clone(eventColumns), 5, 6) // without items
	for b := range 7 {
		cols, timeCol := eventColumns, eventTimeColumn
		if b == 0 {
			cols, timeCol = older, eventTimeColumn-1
		}
		batch := offline.Batch{Dir: "events/transactions", Columns: cols, TimeColumn: timeCol,
			Stream: "transactions/0", FirstOffset: int64(b * 10), LastOffset: int64(b*10 + 9)}
		for o := b * 10; o < b*10+10; o++ {
			row := eventRow(fmt.Sprintf("t%d", o), 1, ms("2026-11-20T12:00:00Z")+int64(o)*1000, 0, int64(o))
			if b == 0 {
				row = slices.Delete(row, 5, 6)
			}
			batch.Rows = append(batch.Rows, row)
		}
		if err := d.WriteBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := d.Compact(ctx, "events/transactions", offline.CompactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The older file stays alone, the newest batch holds the high-water
	// mark, and the five between merge.
	if stats.Written != 1 || stats.Merged != 5 {
		t.Errorf("compaction after a schema change: %+v, want the five newer files merged into one", stats)
	}
	files, err := d.LogFiles(ctx, "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, f := range files {
		_, r, _, err := d.ReadLogFile(ctx, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(r)
	}
	if len(files) != 3 || rows != 70 {
		t.Errorf("%d files and %d rows after compaction, want 3 and 70", len(files), rows)
	}
}

// BenchmarkCompact merges 500 files of 2,000 fraud transactions (1M rows,
// one date) into one, and reports the heap's peak during the merge,
// sampled every 2 ms: a merge holds a row group at a time, not its files.
func BenchmarkCompact(b *testing.B) {
	const files, rows = 500, 2_000
	ctx := context.Background()
	var peak uint64
	for range b.N {
		b.StopTimer()
		d := diskStore(b)
		dir := writeTransactions(b, d.Dir, files, rows)
		var stats offline.CompactStats
		var err error
		peak = max(peak, peakHeap(b, func() { stats, err = d.Compact(ctx, dir, offline.CompactOptions{}) }))
		if err != nil {
			b.Fatal(err)
		}
		if stats.Merged != files-1 { // the newest holds the high-water mark
			b.Fatalf("%+v: want %d files merged", stats, files-1)
		}
	}
	b.ReportMetric(float64(files*rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
