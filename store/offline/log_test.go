package offline_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/segmentio/ksuid"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// eventColumns is an event log's columns with every type: the fraud demo's
// transactions plus a bool and an int field.
var eventColumns = []offline.Column{
	{Name: "txn_id", Type: features.TypeString},
	{Name: "user_id", Type: features.TypeString},
	{Name: "amount", Type: features.TypeFloat},
	{Name: "ts", Type: features.TypeTimestamp},
	{Name: "flagged", Type: features.TypeBool},
	{Name: "items", Type: features.TypeInt},
	{Name: offline.ColEventTime, Type: features.TypeTimestamp},
	{Name: offline.ColTopic, Type: features.TypeString},
	{Name: offline.ColPartition, Type: features.TypeInt},
	{Name: offline.ColOffset, Type: features.TypeInt},
}

const eventTimeColumn = 6

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// eventRow is a row of eventColumns; an empty txn id makes every optional
// field null.
func eventRow(txn string, amount float64, eventTime int64, partition int32, offset int64) []features.Value {
	row := []features.Value{
		features.String(txn), features.String("u-" + txn), features.Float(amount),
		features.Timestamp(eventTime - 1500), features.Bool(offset%2 == 0), features.Int(-offset),
		features.Timestamp(eventTime), features.String("transactions"),
		features.Int(int64(partition)), features.Int(offset),
	}
	if txn == "" {
		for i := range eventTimeColumn {
			row[i] = features.Null
		}
	}
	return row
}

func readFile(t testing.TB, path string) ([]offline.Column, [][]features.Value, map[string]string) {
	t.Helper()
	cols, rows, meta, err := offline.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cols, rows, meta
}

func TestWriteBatchRoundTrip(t *testing.T) { eachBackend(t, testWriteBatchRoundTrip) }

func testWriteBatchRoundTrip(t *testing.T, d *fixture) {
	ctx := context.Background()
	rows := [][]features.Value{
		eventRow("a", 12.5, ms("2026-03-01T23:59:59.250Z"), 3, 100),
		eventRow("", 0, ms("2026-03-02T00:00:00.000Z"), 3, 101), // all optional fields null
		eventRow("c", -0.25, ms("2026-03-01T23:59:59.999Z"), 3, 102),
		eventRow("d", math.Inf(1), ms("2026-03-02T00:00:01.500Z"), 3, 104),
	}
	rows[2][4] = features.Null // one null among values
	rows[3][5] = features.Int(math.MinInt64)
	b := offline.Batch{
		Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
		Rows: rows, Stream: "transactions/3", FirstOffset: 100, LastOffset: 104,
	}
	if err := d.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	files := d.files(t, b.Dir)
	if len(files) != 2 || !strings.HasPrefix(files[0], "date=2026-03-01/") || !strings.HasPrefix(files[1], "date=2026-03-02/") {
		t.Fatalf("files %v, want one in date=2026-03-01 and one in date=2026-03-02", files)
	}
	want := [][][]features.Value{{rows[0], rows[2]}, {rows[1], rows[3]}}
	for i, f := range files {
		id, err := ksuid.Parse(strings.TrimSuffix(filepath.Base(f), ".parquet"))
		if err != nil {
			t.Fatalf("file name %s: %v", f, err)
		}
		if got, want := id.Time().UTC(), time.UnixMilli(ms("2026-03-01T23:59:59Z")).UTC(); !got.Equal(want) {
			t.Errorf("%s: KSUID time %v, want the batch's earliest event time %v", f, got, want)
		}
		if d.root != "" {
			if st, err := os.Stat(filepath.Join(d.root, b.Dir, f)); err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("%s: mode %v (%v), want 0644 so that other tools can read it", f, st.Mode(), err)
			}
		}
		cols, got, meta := d.readLogFile(t, path.Join(b.Dir, f))
		// The reserved columns come back with how logs store them.
		if !slices.EqualFunc(cols, eventColumns, sameNameAndType) {
			t.Errorf("%s: columns %v, want %v", f, cols, eventColumns)
		}
		if !equalRows(got, want[i]) {
			t.Errorf("%s: rows\n%v\nwant\n%v", f, got, want[i])
		}
		// Some columns only, in the file's order, whatever the order asked.
		names := []string{eventColumns[4].Name, "no such column", eventColumns[1].Name}
		cols, got, _, err = d.ReadLogFile(ctx, path.Join(b.Dir, f), names...)
		if err != nil {
			t.Fatal(err)
		}
		if wantCols := []offline.Column{eventColumns[1], eventColumns[4]}; !slices.EqualFunc(cols, wantCols, sameNameAndType) {
			t.Errorf("%s: reading %q, columns %v, want %v", f, names, cols, wantCols)
		}
		var wantSome [][]features.Value
		for _, r := range want[i] {
			wantSome = append(wantSome, []features.Value{r[1], r[4]})
		}
		if !equalRows(got, wantSome) {
			t.Errorf("%s: reading %q, rows\n%v\nwant\n%v", f, names, got, wantSome)
		}
		wantMeta := map[string]string{
			"quiver.stream": "transactions/3", "quiver.first_offset": "100", "quiver.last_offset": "104",
			"quiver.batch_dates": "2026-03-01,2026-03-02",
		}
		for k, v := range wantMeta {
			if meta[k] != v {
				t.Errorf("%s: metadata %s = %q, want %q", f, k, meta[k], v)
			}
		}
	}
}

func equalRows(a, b [][]features.Value) bool {
	return slices.EqualFunc(a, b, func(x, y []features.Value) bool { return slices.Equal(x, y) })
}

// TestWriteBatchDictionaries checks that string columns, ids and categories
// that repeat, are dictionary-encoded, nulls included, and read back
// exactly.
func TestWriteBatchDictionaries(t *testing.T) {
	ctx := context.Background()
	d := diskStore(t)
	const n = 20_000
	rows := make([][]features.Value, n)
	for i := range rows {
		rows[i] = eventRow(fmt.Sprintf("txn-%d", i), float64(i), ms("2026-03-01T08:00:00Z")+int64(i), 3, int64(i))
		rows[i][1] = features.String(fmt.Sprintf("u%d", i%50))
		if i%7 == 0 {
			rows[i][1] = features.Null
		}
	}
	b := offline.Batch{Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
		Rows: rows, Stream: "transactions/3", FirstOffset: 0, LastOffset: n - 1}
	if err := d.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	files := d.files(t, b.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	name := path.Join(b.Dir, files[0])
	if _, got, _ := d.readLogFile(t, name); !equalRows(got, rows) {
		t.Fatal("the rows read back differ from those written")
	}
	f, err := os.Open(filepath.Join(d.root, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for c, col := range eventColumns {
		var data []string // the data pages' encodings
		for _, s := range pf.Metadata().RowGroups[0].Columns[c].MetaData.EncodingStats {
			if s.PageType != format.DictionaryPage {
				data = append(data, s.Encoding.String())
			}
		}
		dict := len(data) > 0 && !slices.ContainsFunc(data, func(e string) bool { return e != "RLE_DICTIONARY" })
		if want := col.Type == features.TypeString; dict != want {
			t.Errorf("%s: data pages encoded %v; want a dictionary: %v", col.Name, data, want)
		}
	}
}

func TestWriteBatchReplaceSameBatch(t *testing.T) { eachBackend(t, testWriteBatchReplaceSameBatch) }

func testWriteBatchReplaceSameBatch(t *testing.T, d *fixture) {
	ctx := context.Background()
	var rows [][]features.Value
	for i := range 50 {
		rows = append(rows, eventRow(fmt.Sprint(i), float64(i), ms("2026-03-01T23:59:30Z")+int64(i)*1000, 0, int64(i)))
	}
	b := offline.Batch{
		Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
		Rows: rows, Stream: "transactions/0", FirstOffset: 0, LastOffset: 49,
	}
	if err := d.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	first := d.files(t, b.Dir)
	// Again, from this Dir and from another on the same root (a restarted process).
	for _, d := range []*offline.Dir{d.Dir, d.reopen(t)} {
		if err := d.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.files(t, b.Dir); !slices.Equal(got, first) || len(got) != 2 {
		t.Fatalf("files after rewriting %v, first written %v; want the same two", got, first)
	}
	var all [][]features.Value
	for _, f := range first {
		_, rows, _ := d.readLogFile(t, path.Join(b.Dir, f))
		all = append(all, rows...)
	}
	if !equalRows(all, rows) {
		t.Fatalf("read back %d rows, want the %d written once", len(all), len(rows))
	}
	// A different batch over the same offsets is a different file.
	b.LastOffset = 48
	b.Rows = rows[:49]
	if err := d.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := d.files(t, b.Dir); len(got) != 4 {
		t.Fatalf("files %v, want 4", got)
	}
}

func TestWriteBatchEmpty(t *testing.T) {
	d := diskStore(t)
	if err := d.WriteBatch(context.Background(), offline.Batch{Dir: "events/x", Stream: "x/0"}); err != nil {
		t.Fatal(err)
	}
	if files := d.files(t, "events"); len(files) != 0 {
		t.Fatalf("an empty batch wrote %v", files)
	}
}

func TestWriteBatchInvalid(t *testing.T) {
	d := diskStore(t)
	good := func() offline.Batch {
		return offline.Batch{
			Dir: "events/transactions", Columns: slices.Clone(eventColumns), TimeColumn: eventTimeColumn,
			Rows:   [][]features.Value{eventRow("a", 1, ms("2026-03-01T10:00:00Z"), 0, 7)},
			Stream: "transactions/0", FirstOffset: 7, LastOffset: 7,
		}
	}
	cases := map[string]func(b *offline.Batch){
		"bad dir":             func(b *offline.Batch) { b.Dir = "../x" },
		"hidden dir":          func(b *offline.Batch) { b.Dir = "events/.x" },
		"no stream":           func(b *offline.Batch) { b.Stream = "" },
		"offsets reversed":    func(b *offline.Batch) { b.FirstOffset = 8 },
		"duplicate column":    func(b *offline.Batch) { b.Columns[1].Name = "txn_id" },
		"null type":           func(b *offline.Batch) { b.Columns[1].Type = features.TypeNull },
		"reserved type":       func(b *offline.Batch) { b.Columns[9].Type = features.TypeString },
		"time column range":   func(b *offline.Batch) { b.TimeColumn = 10 },
		"time column type":    func(b *offline.Batch) { b.TimeColumn = 0 },
		"short row":           func(b *offline.Batch) { b.Rows[0] = b.Rows[0][:9] },
		"wrong value type":    func(b *offline.Batch) { b.Rows[0][0] = features.Int(1) },
		"null required":       func(b *offline.Batch) { b.Rows[0][7] = features.Null },
		"null event time":     func(b *offline.Batch) { b.Rows[0][eventTimeColumn] = features.Null },
		"partition too large": func(b *offline.Batch) { b.Rows[0][8] = features.Int(1 << 40) },
		"event time too late": func(b *offline.Batch) { b.Rows[0][eventTimeColumn] = features.Timestamp(math.MaxInt64) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			b := good()
			b.Rows[0] = slices.Clone(b.Rows[0])
			mutate(&b)
			err := d.WriteBatch(context.Background(), b)
			if !errors.Is(err, offline.ErrInvalidBatch) {
				t.Fatalf("WriteBatch: %v, want ErrInvalidBatch", err)
			}
		})
	}
	if files := d.files(t, "events"); len(files) != 0 {
		t.Fatalf("invalid batches wrote %v", files)
	}
	// An int is a valid float.
	b := good()
	b.Rows[0][2] = features.Int(3)
	if err := d.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	files := d.files(t, b.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if _, rows, _ := d.readLogFile(t, path.Join(b.Dir, files[0])); rows[0][2] != features.Float(3) {
		t.Fatalf("int in a float column read back as %v", rows[0][2])
	}
}

// featureBatch is a feature log batch of one row per offset, at the given time.
func featureBatch(stream string, first, last int64, times ...string) offline.Batch {
	b := offline.Batch{
		Dir: "features/user_txn/v1",
		Columns: []offline.Column{
			{Name: "user_id", Type: features.TypeString},
			{Name: offline.ColEventTime, Type: features.TypeTimestamp},
			{Name: "txn_count_1h", Type: features.TypeInt},
			{Name: "amount_avg_24h", Type: features.TypeFloat},
		},
		TimeColumn: 1, Stream: stream, FirstOffset: first, LastOffset: last,
	}
	for i, tm := range times {
		b.Rows = append(b.Rows, []features.Value{
			features.String("u1"), features.Timestamp(ms(tm)), features.Int(int64(i)), features.Null,
		})
	}
	return b
}

func hwm(t testing.TB, d *offline.Dir, dir, stream string) string {
	t.Helper()
	off, ok, err := d.HighWaterMark(context.Background(), dir, stream)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "none"
	}
	return fmt.Sprint(off)
}

func TestHighWaterMark(t *testing.T) { eachBackend(t, testHighWaterMark) }

func testHighWaterMark(t *testing.T, d *fixture) {
	ctx := context.Background()
	const dir = "features/user_txn/v1"
	if got := hwm(t, d.Dir, dir, "t/0"); got != "none" {
		t.Fatalf("empty store: %s, want none", got)
	}
	batches := []offline.Batch{
		featureBatch("t/0", 0, 9, "2026-03-01T10:00:00Z"),
		featureBatch("t/0", 10, 19, "2026-03-01T23:00:00Z", "2026-03-02T01:00:00Z"),
		featureBatch("t/1", 0, 99, "2026-03-02T05:00:00Z"),
		// A late event: the highest offsets of t/0 land in the earliest date.
		featureBatch("t/0", 20, 29, "2026-02-27T10:00:00Z"),
		featureBatch("t/2", 5, 5, "2026-03-03T10:00:00Z"),
	}
	for _, b := range batches[:2] {
		if err := d.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if got := hwm(t, d.Dir, dir, "t/0"); got != "19" {
		t.Fatalf("t/0: %s, want 19", got)
	}
	// Written after the index was built: recorded by WriteBatch.
	for _, b := range batches[2:] {
		if err := d.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A leftover temporary file with higher offsets does not count.
	other := featureBatch("t/0", 1000, 1000, "2026-03-03T10:00:00Z")
	elsewhere := diskStore(t)
	if err := elsewhere.WriteBatch(ctx, other); err != nil {
		t.Fatal(err)
	}
	data, err := elsewhere.ReadFile(ctx, path.Join(dir, elsewhere.files(t, dir)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ReplaceFile(ctx, path.Join(dir, "date=2026-03-03", ".tmp-123.parquet"), data); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"t/0": "29", "t/1": "99", "t/2": "5", "t/3": "none"}
	check := func(d *offline.Dir) {
		t.Helper()
		for s, w := range want {
			if got := hwm(t, d, dir, s); got != w {
				t.Errorf("%s: %s, want %s", s, got, w)
			}
		}
		if got := hwm(t, d, "events/transactions", "t/0"); got != "none" {
			t.Errorf("another log: %s, want none", got)
		}
	}
	check(d.Dir)
	// A new Dir on the same root scans the files.
	d2 := d.reopen(t)
	check(d2)
	// Another process (Dir) writes after d built its index: d sees it.
	if err := d2.WriteBatch(ctx, other); err != nil {
		t.Fatal(err)
	}
	want["t/0"] = "1000"
	check(d.Dir)
	// Removing a complete batch's file (compaction) does not lower the mark.
	for _, f := range d.files(t, dir) {
		if strings.HasPrefix(f, "date=2026-02-27/") {
			if err := d.RemoveFile(ctx, path.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want["t/0"] = "1000"
	check(d.Dir)
}

// TestHighWaterMarkIncompleteBatch: a batch over two dates of which only one
// file made it (a crash between the renames) does not count, and its file is
// removed so that the replay, however it is batched, leaves no duplicates.
func TestHighWaterMarkIncompleteBatch(t *testing.T) { eachBackend(t, testHighWaterMarkIncompleteBatch) }

func testHighWaterMarkIncompleteBatch(t *testing.T, d *fixture) {
	ctx := context.Background()
	const dir = "features/user_txn/v1"
	for _, b := range []offline.Batch{
		featureBatch("t/0", 0, 9, "2026-03-01T10:00:00Z"),
		featureBatch("t/0", 10, 19, "2026-03-01T23:00:00Z", "2026-03-02T01:00:00Z"),
		featureBatch("t/1", 0, 9, "2026-03-01T23:00:00Z", "2026-03-02T01:00:00Z"),
	} {
		if err := d.WriteBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	files := d.files(t, dir)
	var crashed string
	for _, f := range files {
		if _, _, meta := d.readLogFile(t, path.Join(dir, f)); meta["quiver.first_offset"] == "10" && strings.HasPrefix(f, "date=2026-03-02/") {
			if err := d.RemoveFile(ctx, path.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		} else if meta["quiver.first_offset"] == "10" {
			crashed = f
		}
	}
	d2 := d.reopen(t)
	if got := hwm(t, d2, dir, "t/0"); got != "9" {
		t.Fatalf("t/0: %s, want 9 (the incomplete batch does not count)", got)
	}
	if _, err := d.ReadFile(ctx, path.Join(dir, crashed)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the incomplete batch's file %s is still there (%v)", crashed, err)
	}
	if got := hwm(t, d2, dir, "t/1"); got != "9" {
		t.Fatalf("t/1: %s, want 9", got)
	}
	if got := len(d.files(t, dir)); got != len(files)-2 {
		t.Fatalf("%d files left, want %d", got, len(files)-2)
	}
}

// TestHighWaterMarkConcurrent writes batches for several streams, some over
// two dates, while asking for their marks; run with -race.
func TestHighWaterMarkConcurrent(t *testing.T) { eachBackend(t, testHighWaterMarkConcurrent) }

func testHighWaterMarkConcurrent(t *testing.T, d *fixture) {
	ctx := context.Background()
	const (
		dir     = "features/user_txn/v1"
		streams = 4
		batches = 30
	)
	// Each call lists the log again on S3: fewer there, to keep the test short.
	rounds := 100
	if d.root == "" {
		rounds = 10
	}
	var written [streams]int64 // last offset written, per stream; guarded by mu
	var mu sync.Mutex
	var wg sync.WaitGroup
	for s := range streams {
		wg.Go(func() {
			for i := range batches {
				tm := "2026-03-01T12:00:00Z"
				times := []string{tm}
				if i%3 == 0 {
					times = append(times, "2026-03-02T00:30:00Z")
				}
				b := featureBatch(fmt.Sprintf("t/%d", s), int64(i*10), int64(i*10+9), times...)
				if err := d.WriteBatch(ctx, b); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[s] = b.LastOffset
				mu.Unlock()
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			var last [streams]int64
			for s := range last {
				last[s] = -1 // none yet
			}
			for range rounds {
				for s := range streams {
					mu.Lock()
					before := written[s]
					mu.Unlock()
					off, ok, err := d.HighWaterMark(ctx, dir, fmt.Sprintf("t/%d", s))
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						off = -1
					}
					if off < last[s] || (before > 0 && off < before) {
						t.Errorf("reader %d, t/%d: mark %d after %d (written %d)", r, s, off, last[s], before)
					}
					last[s] = off
				}
			}
		})
	}
	wg.Wait()
	for _, dd := range []*offline.Dir{d.Dir, d.reopen(t)} {
		for s := range streams {
			if got, want := hwm(t, dd, dir, fmt.Sprintf("t/%d", s)), fmt.Sprint(batches*10-1); got != want {
				t.Errorf("t/%d: %s, want %s", s, got, want)
			}
		}
	}
	if got, want := len(d.files(t, dir)), streams*(batches+batches/3); got != want {
		t.Errorf("%d files, want %d", got, want)
	}
}

// transactionColumns is the fraud demo's transactions source as logged.
var transactionColumns = []offline.Column{
	{Name: "txn_id", Type: features.TypeString},
	{Name: "user_id", Type: features.TypeString},
	{Name: "merchant_id", Type: features.TypeString},
	{Name: "amount", Type: features.TypeFloat},
	{Name: "country", Type: features.TypeString},
	{Name: "ts", Type: features.TypeTimestamp},
	{Name: offline.ColEventTime, Type: features.TypeTimestamp},
	{Name: offline.ColTopic, Type: features.TypeString},
	{Name: offline.ColPartition, Type: features.TypeInt},
	{Name: offline.ColOffset, Type: features.TypeInt},
}

// BenchmarkWriteBatch writes 10k-row batches of fraud transactions, each a
// new file (zstd, synced, renamed into place).
func BenchmarkWriteBatch(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	d := diskStore(b)
	batch := transactionBatch(n)
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		batch.FirstOffset, batch.LastOffset = i*n, i*n+n-1
		i++
		if err := d.WriteBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i*n)/b.Elapsed().Seconds(), "rows/s")
	files := d.files(b, batch.Dir)
	if st, err := os.Stat(filepath.Join(d.root, batch.Dir, files[0])); err == nil {
		b.ReportMetric(float64(st.Size()), "bytes/file")
	}
}

// BenchmarkReadLogFile reads back a file of 10k fraud transactions, as
// backfill and replays read the event log.
func BenchmarkReadLogFile(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	d := diskStore(b)
	batch := transactionBatch(n)
	batch.LastOffset = n - 1
	if err := d.WriteBatch(ctx, batch); err != nil {
		b.Fatal(err)
	}
	files, err := d.LogFiles(ctx, batch.Dir)
	if err != nil || len(files) != 1 {
		b.Fatalf("%d files, %v", len(files), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, rows, _, err := d.ReadLogFile(ctx, files[0].Name); err != nil || len(rows) != n {
			b.Fatalf("%d rows, %v", len(rows), err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}

// transactionBatch is a batch of n fraud transactions.
func transactionBatch(n int) offline.Batch {
	countries := []string{"US", "GB", "DE", "FR", "NL", "BR", "IN", "JP"}
	start := ms("2026-03-01T08:00:00Z")
	rows := make([][]features.Value, n)
	for i := range rows {
		t := start + int64(i)*37
		rows[i] = []features.Value{
			features.String(fmt.Sprintf("txn-%08d", i)),
			features.String(fmt.Sprintf("u%05d", i*7919%20000)),
			features.String(fmt.Sprintf("m%04d", i*104729%3000)),
			features.Float(float64(i*7919%100000) / 100),
			features.String(countries[i%len(countries)]),
			features.Timestamp(t),
			features.Timestamp(t),
			features.String("transactions"),
			features.Int(3),
			features.Int(int64(i)),
		}
	}
	return offline.Batch{
		Dir: "events/transactions", Columns: transactionColumns, TimeColumn: 6,
		Rows: rows, Stream: "transactions/3",
	}
}

// TestReadFileForeignTypes reads types other tools write, as backfill inputs.
func TestReadFileForeignTypes(t *testing.T) {
	type spine struct {
		Day  int32    `parquet:"day,date"`
		Us   int64    `parquet:"ts_us,timestamp(microsecond)"`
		Ns   int64    `parquet:"ts_ns,timestamp(nanosecond)"`
		F32  float32  `parquet:"f32"`
		I32  int32    `parquet:"i32"`
		U32  uint32   `parquet:"u32"`
		Name *string  `parquet:"name,optional"`
		Raw  []byte   `parquet:"raw"`
		Amt  *float64 `parquet:"amount,optional"`
	}
	name := "n"
	path := filepath.Join(t.TempDir(), "spine.parquet")
	in := []spine{
		{Day: 20513, Us: 1_772_409_600_123_456, Ns: -1, F32: 1.5, I32: -7, U32: 1<<31 + 5, Name: &name, Raw: []byte("r")},
		{Day: -1, Us: 0, Ns: 1_500_000, F32: 0, I32: 1 << 30},
	}
	if err := parquet.WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	cols, rows, _ := readFile(t, path)
	wantCols := []offline.Column{
		{Name: "day", Type: features.TypeTimestamp}, {Name: "ts_us", Type: features.TypeTimestamp},
		{Name: "ts_ns", Type: features.TypeTimestamp}, {Name: "f32", Type: features.TypeFloat},
		{Name: "i32", Type: features.TypeInt}, {Name: "u32", Type: features.TypeInt}, {Name: "name", Type: features.TypeString},
		{Name: "raw", Type: features.TypeString}, {Name: "amount", Type: features.TypeFloat},
	}
	// How the file stores them (Column.Stored) is TestArrowKeepsForeignTypes'.
	if !slices.EqualFunc(cols, wantCols, func(a, b offline.Column) bool { return a.Name == b.Name && a.Type == b.Type }) {
		t.Fatalf("columns %v, want %v", cols, wantCols)
	}
	want := [][]features.Value{
		// Times in finer units keep the digits below the millisecond.
		{features.Timestamp(20513 * 86_400_000), features.TimestampNano(1_772_409_600_123, 456_000), features.TimestampNano(-1, 999_999),
			features.Float(1.5), features.Int(-7), features.Int(1<<31 + 5), features.String("n"), features.String("r"), features.Null},
		{features.Timestamp(-86_400_000), features.Timestamp(0), features.TimestampNano(1, 500_000),
			features.Float(0), features.Int(1 << 30), features.Int(0), features.Null, features.String(""), features.Null},
	}
	if !equalRows(rows, want) {
		t.Fatalf("rows\n%v\nwant\n%v", rows, want)
	}
}

// BenchmarkHighWaterMark asks for a mark in a log of 1,000 files over 10
// dates: cold (a new Dir, reading every footer) and warm (statting the date
// directories only).
func BenchmarkHighWaterMark(b *testing.B) {
	ctx := context.Background()
	d := diskStore(b)
	const dir = "features/user_txn/v1"
	for i := range 1000 {
		tm := time.UnixMilli(ms("2026-03-01T12:00:00Z")).Add(time.Duration(i%10) * 24 * time.Hour).Format(time.RFC3339)
		if err := d.WriteBatch(ctx, featureBatch(fmt.Sprintf("t/%d", i%8), int64(i*10), int64(i*10+9), tm)); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // past the window in which directory times are not trusted
	for _, cold := range []bool{true, false} {
		b.Run(map[bool]string{true: "cold", false: "warm"}[cold], func(b *testing.B) {
			dd := d.reopen(b)
			for b.Loop() {
				if cold {
					dd = d.reopen(b)
				}
				if _, ok, err := dd.HighWaterMark(ctx, dir, "t/3"); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// TestReadFileRefusesLZ4 checks that a file of LZ4 pages is refused with a
// clear error rather than read by parquet-go's LZ4 decoder, which
// mis-decodes some pages and loops without end on corrupt ones.
func TestReadFileRefusesLZ4(t *testing.T) {
	type row struct {
		User string `parquet:"user_id"`
	}
	path := filepath.Join(t.TempDir(), "spine.parquet")
	if err := parquet.WriteFile(path, []row{{"u1"}}, parquet.Compression(&parquet.Lz4Raw)); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := offline.ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), "column user_id: LZ4_RAW compression is not supported") {
		t.Fatalf("error %v, want LZ4_RAW refused", err)
	}
}

func sameNameAndType(a, b offline.Column) bool { return a.Name == b.Name && a.Type == b.Type }

// TestLogColumnsReserved checks that no source may declare a field with the
// name of a column the event log adds: its file would have two.
func TestLogColumnsReserved(t *testing.T) {
	for _, name := range []string{offline.ColEventTime, offline.ColTopic, offline.ColPartition, offline.ColOffset} {
		def := fmt.Sprintf("project: p\nsources:\n  - {name: s, topic: s, event_time: ts, schema: {ts: timestamp, %s: int}}\n", name)
		_, err := features.Parse("defs.yaml", []byte(def))
		if err == nil || !strings.Contains(err.Error(), "offline event log") {
			t.Errorf("a field named %s: error %v, want one about the event log's column", name, err)
		}
	}
}
