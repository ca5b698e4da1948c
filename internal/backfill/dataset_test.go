package backfill_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/backfill"
	"github.com/quiver-ml/quiver/store/offline"
)

// randomDefinitions returns definitions with one source and a few random
// views of a user entity: random aggregations, windows and granularities,
// sometimes a filter.
func randomDefinitions(t *testing.T, rng *rand.Rand) *features.Definitions {
	aggs := []string{"count", "sum", "avg", "min", "max", "stddev", "count_distinct", "last"}
	fields := map[string][]string{
		"count": {""}, "sum": {"amount", "n"}, "avg": {"amount", "n"}, "stddev": {"amount"},
		"min": {"amount", "n", "ts"}, "max": {"amount", "n"}, "count_distinct": {"cat", "n"}, "last": {"cat", "amount", "flag", "ts"},
	}
	windows := []string{"", "1m", "10m", "1h", "6h", "24h"}
	var b strings.Builder
	b.WriteString(`project: parity
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: events, topic: events, format: json, event_time: ts, allowed_lateness: 1h,
     schema: {user_id: string, amount: float, n: int, cat: string, flag: bool, ts: timestamp}}
feature_views:
`)
	for v := range 1 + rng.IntN(3) {
		fmt.Fprintf(&b, "  - name: v%d\n    version: 1\n    entity: user\n    source: events\n", v)
		if rng.IntN(3) == 0 {
			b.WriteString("    ttl: 2h\n")
		}
		if rng.IntN(3) == 0 {
			b.WriteString("    filter: \"e.amount > 10.0\"\n")
		}
		b.WriteString("    features:\n")
		for f := range 1 + rng.IntN(5) {
			agg := aggs[rng.IntN(len(aggs))]
			fmt.Fprintf(&b, "      - {name: f%d, agg: %s", f, agg)
			if field := fields[agg][rng.IntN(len(fields[agg]))]; field != "" {
				fmt.Fprintf(&b, ", field: %s", field)
			}
			if w := windows[rng.IntN(len(windows))]; w != "" {
				fmt.Fprintf(&b, ", window: %s", w)
				if w == "24h" && rng.IntN(2) == 0 {
					b.WriteString(", granularity: 1h")
				}
			}
			b.WriteString("}\n")
		}
	}
	defs, err := features.Parse("parity.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return defs
}

type testEvent struct {
	ev   features.Event
	user string
}

// writeEvents writes n random events of 8 users over two days to the
// offline event log, as ingest does: in batches per partition, in arrival
// order, some out of order. It returns them in arrival order.
func writeEvents(t *testing.T, rng *rand.Rand, defs *features.Definitions, dir *offline.Dir, start time.Time, n int) []testEvent {
	src := defs.Source("events")
	cols := offline.EventColumns(src)
	var out []testEvent
	batches := map[int32]*offline.Batch{}
	offsets := map[int32]int64{} // after those of the log's earlier events
	marks, err := dir.Marks(context.Background(), "events/events")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if m, ok := marks[fmt.Sprintf("events/%d", p)]; ok {
			offsets[p] = m + 1
		}
	}
	at := start
	for i := range n {
		at = at.Add(time.Duration(rng.IntN(90)) * time.Second)
		te := at.Add(-time.Duration(rng.IntN(3)) * time.Duration(rng.IntN(20)) * time.Minute) // out of order, within lateness
		user := fmt.Sprintf("u%d", rng.IntN(8))
		p := int32(rng.IntN(2))
		ev := features.Event{Time: te.UnixMilli(), Partition: p, Offset: offsets[p], Fields: make([]features.Value, len(src.Schema))}
		offsets[p]++
		for j, f := range src.Schema {
			switch f.Name {
			case "user_id":
				ev.Fields[j] = features.String(user)
			case "amount":
				if rng.IntN(10) > 0 {
					ev.Fields[j] = features.Float(float64(rng.IntN(10000)) / 100)
				}
			case "n":
				ev.Fields[j] = features.Int(int64(rng.IntN(7) - 3))
			case "cat":
				if rng.IntN(8) > 0 {
					ev.Fields[j] = features.String(fmt.Sprintf("c%d", rng.IntN(5+i%50)))
				}
			case "flag":
				ev.Fields[j] = features.Bool(rng.IntN(2) == 0)
			case "ts":
				ev.Fields[j] = features.Timestamp(te.UnixMilli())
			}
		}
		out = append(out, testEvent{ev: ev, user: user})
		b := batches[p]
		if b == nil {
			b = &offline.Batch{Dir: "events/events", Columns: cols, TimeColumn: len(src.Schema), Stream: fmt.Sprintf("events/%d", p), FirstOffset: ev.Offset}
			batches[p] = b
		}
		b.Rows = append(b.Rows, append(append([]features.Value(nil), ev.Fields...),
			features.Timestamp(ev.Time), features.String("events"), features.Int(int64(p)), features.Int(ev.Offset)))
		b.LastOffset = ev.Offset
		if len(b.Rows) >= 40+rng.IntN(40) || i == n-1 {
			if err := dir.WriteBatch(context.Background(), *b); err != nil {
				t.Fatal(err)
			}
			delete(batches, p)
		}
	}
	for _, b := range batches {
		if err := dir.WriteBatch(context.Background(), *b); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// online is what serve gives a model at for user when the entity's state
// holds exactly the events before at (at or before, inclusive), applied in
// arrival order: the engine, as ingest runs it, evaluated at the millisecond
// at falls in, and the empty windows' values before the first event and
// past the view's TTL.
func online(t *testing.T, defs *features.Definitions, v *features.View, events []testEvent, user string, at time.Time, inclusive bool) []features.Value {
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		t.Fatal(err)
	}
	st := eng.NewState()
	for _, e := range events {
		if te := time.UnixMilli(e.ev.Time); e.user == user && (te.Before(at) || inclusive && te.Equal(at)) {
			eng.Apply(st, &e.ev) // an event the filter fails on changes nothing
		}
	}
	out := make([]features.Value, len(v.Features))
	if last, ok := st.LastEventTime(); !ok || v.TTL > 0 && at.UnixMilli()-last > v.TTL.Milliseconds() {
		eng.Empty(out) // NOT_FOUND or OUTSIDE_MAX_AGE
		return out
	}
	if err := eng.Evaluate(st, at.UnixMilli(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDatasetMatchesOnline is the online/offline parity test: random
// definitions and events, random spine times (some exactly at events, some
// of entities without events), and every dataset value equals the engine's
// online value at the spine time with the same events, exclusive and
// inclusive, in one bucket and in many. Some spine times have digits below
// the millisecond: the events of that millisecond precede them.
func TestDatasetMatchesOnline(t *testing.T) {
	cases := 12
	if testing.Short() {
		cases = 3
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("QUIVER_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (QUIVER_PROPERTY_SEED reruns it)", seed)
	for c := range cases {
		rng := rand.New(rand.NewPCG(seed, uint64(c)))
		defs := randomDefinitions(t, rng)
		dir := t.TempDir()
		off, err := offline.NewDir(filepath.Join(dir, "offline"))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC) // the log spans dates
		events := writeEvents(t, rng, defs, off, start, 300+rng.IntN(500))

		// The spine: times at events and between them, users with and
		// without events, in random order.
		spine := filepath.Join(dir, "spine.csv")
		var rows [][]string
		for range 60 {
			user := fmt.Sprintf("u%d", rng.IntN(10))
			var at int64
			if rng.IntN(3) == 0 {
				at = events[rng.IntN(len(events))].ev.Time
			} else {
				at = start.Add(time.Duration(rng.Int64N(int64(30 * time.Hour)))).UnixMilli()
			}
			ts := strconv.FormatInt(at, 10)
			switch rng.IntN(3) {
			case 0:
				ts = time.UnixMilli(at).UTC().Format(time.RFC3339Nano)
			case 1:
				ts = time.UnixMilli(at).Add(time.Duration(1 + rng.IntN(999_999))).UTC().Format(time.RFC3339Nano)
			}
			rows = append(rows, []string{user, ts, strconv.Itoa(rng.IntN(2))})
		}
		writeCSV(t, spine, []string{"user_id", "label_time", "label"}, rows)

		// Some of the features, in random order: the engines compute
		// only those requested.
		type requested struct {
			view    *features.View
			feature int
		}
		var all []requested
		for _, v := range defs.Views {
			for i := range v.Features {
				all = append(all, requested{v, i})
			}
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		all = all[:1+rng.IntN(len(all))]
		var refs []string
		for _, r := range all {
			refs = append(refs, r.view.Ref()+":"+r.view.Features[r.feature].Name)
		}
		for _, mode := range []struct {
			inclusive bool
			memory    int64
		}{{false, 0}, {true, 0}, {false, 64 << 10}} {
			out := filepath.Join(dir, fmt.Sprintf("out-%v-%d.parquet", mode.inclusive, mode.memory))
			sum, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{
				Definitions: defs, Offline: off, Spine: spine, TimestampColumn: "label_time",
				Features: refs, Out: out, Inclusive: mode.inclusive, MemoryLimit: mode.memory, TempDir: dir,
			})
			if err != nil {
				t.Fatal(err)
			}
			if mode.memory > 0 && sum.Buckets < 2 {
				t.Fatalf("a 64 KiB memory limit used %d bucket", sum.Buckets)
			}
			cols, got, _, err := offline.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(rows) {
				t.Fatalf("%d rows, want the spine's %d", len(got), len(rows))
			}
			for r, row := range got {
				if row[0].Str() != rows[r][0] || fmt.Sprint(row[2].Int()) != rows[r][2] {
					t.Fatalf("row %d is %v, the spine's is %v: the spine's order or values are lost", r, row[:3], rows[r])
				}
				ms, _ := strconv.ParseInt(rows[r][1], 10, 64)
				at := time.UnixMilli(ms)
				if tm, err := time.Parse(time.RFC3339Nano, rows[r][1]); err == nil {
					at = tm
				}
				for i, req := range all {
					col, f := 3+i, req.view.Features[req.feature]
					want := online(t, defs, req.view, events, rows[r][0], at, mode.inclusive)[req.feature]
					if cols[col].Name != req.view.Name+"__"+f.Name {
						t.Fatalf("column %d is %s, want %s", col, cols[col].Name, req.view.Name+"__"+f.Name)
					}
					if !row[col].Equal(want) && !(row[col].Type() == features.TypeFloat && want.Type() == features.TypeInt && row[col].Float() == float64(want.Int())) {
						t.Errorf("case %d (inclusive %v, memory %d) row %d (%s at %v): %s = %v, online %v",
							c, mode.inclusive, mode.memory, r, rows[r][0], at, cols[col].Name, row[col], want)
					}
				}
			}
			if t.Failed() {
				t.FailNow()
			}
		}
	}
}

func writeCSV(t *testing.T, path string, header []string, rows [][]string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write(header)
	w.WriteAll(rows)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// smallRun writes 500 events of random definitions (seeded with seed) to
// an offline store in a temp dir, and beside it a CSV spine of 100 rows:
// user_id (ten users), label_time (epoch ms), row (its number).
func smallRun(t *testing.T, seed uint64) (defs *features.Definitions, off *offline.Dir, dir, spine string, rows [][]string) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	defs = randomDefinitions(t, rng)
	dir = t.TempDir()
	off, err := offline.NewDir(filepath.Join(dir, "offline"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)
	writeEvents(t, rng, defs, off, start, 500)
	spine = filepath.Join(dir, "spine.csv")
	for i := range 100 {
		rows = append(rows, []string{fmt.Sprintf("u%d", rng.IntN(10)), strconv.FormatInt(start.Add(time.Duration(rng.Int64N(int64(30*time.Hour)))).UnixMilli(), 10), strconv.Itoa(i)})
	}
	writeCSV(t, spine, []string{"user_id", "label_time", "row"}, rows)
	return defs, off, dir, spine, rows
}

// TestShards: a spine built in three shards and merged is the dataset built
// at once, row for row, with the same profile. A Parquet spine's columns
// keep the types it has, in both.
func TestShards(t *testing.T) {
	t.Run("csv", func(t *testing.T) {
		defs, off, dir, spine, rows := smallRun(t, 5)
		testShards(t, defs, off, dir, spine, len(rows))
	})
	t.Run("parquet", func(t *testing.T) {
		defs, off, dir, _, rows := smallRun(t, 5)
		// As pandas writes times (nanoseconds, not adjusted to UTC, here
		// with digits below the millisecond) and DuckDB ints (INT32);
		// required columns; decimals, UUIDs and unsigned ints.
		type spineRow struct {
			User   string   `parquet:"user_id"`
			Time   int64    `parquet:"label_time,timestamp(nanosecond:local)"`
			Row    int32    `parquet:"row"`
			Amount int64    `parquet:"amount,decimal(2:12)"`
			Wide   [16]byte `parquet:"wide,decimal(4:38)"`
			ID     [16]byte `parquet:"request_id,uuid"`
			Count  uint64   `parquet:"count"`
		}
		var in []spineRow
		for i, r := range rows {
			ms, _ := strconv.ParseInt(r[1], 10, 64)
			n, _ := strconv.Atoi(r[2])
			in = append(in, spineRow{r[0], ms*1e6 + int64(i)*7919%1e6, int32(n), int64(i*137 - 5000),
				[16]byte{0x0f, 15: byte(i)}, [16]byte{byte(i), 1, 15: 2}, uint64(i) << 50})
		}
		spine := filepath.Join(dir, "spine.parquet")
		if err := parquet.WriteFile(spine, in); err != nil {
			t.Fatal(err)
		}
		whole, merged := testShards(t, defs, off, dir, spine, len(rows))
		want := parquet.SchemaOf(spineRow{}).Fields()
		for _, out := range []string{whole, merged} {
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			pf, err := parquet.OpenFile(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			got := pf.Schema().Fields()
			for j, w := range want {
				if g := got[j]; g.Name() != w.Name() || g.Type().String() != w.Type().String() || g.Required() != w.Required() {
					t.Errorf("%s: column %d is %s %s (required %v), the spine's %s %s (required %v)",
						filepath.Base(out), j, g.Name(), g.Type(), g.Required(), w.Name(), w.Type(), w.Required())
				}
			}
			f.Close()
			read, err := parquet.ReadFile[spineRow](out)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(read, in) {
				t.Errorf("%s: the spine's columns read %v, want %v", filepath.Base(out), read[:3], in[:3])
			}
		}
	})
}

// testShards builds the dataset of spine whole, and in three shards merged,
// and checks they are the same. It returns both files.
func testShards(t *testing.T, defs *features.Definitions, off *offline.Dir, dir, spine string, spineRows int) (whole, merged string) {
	refs := allFeatures(defs)
	build := func(out string, shard backfill.Shard, inclusive ...bool) {
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: out, Shard: shard, TempDir: dir, Inclusive: len(inclusive) > 0}); err != nil {
			t.Fatal(err)
		}
	}
	whole = filepath.Join(dir, "whole.parquet")
	build(whole, backfill.Shard{})
	var parts []string
	for i := range 3 {
		parts = append(parts, filepath.Join(dir, fmt.Sprintf("part-%d.parquet", i)))
		build(parts[i], backfill.Shard{Index: i, Count: 3})
	}
	// A shard holds whole entities: no user is in two shards.
	owner := map[string]int{}
	for i, part := range parts {
		cols, got, _, err := offline.ReadFile(part)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cols, func(c offline.Column) bool { return c.Name == backfill.SpineRowColumn }) {
			t.Fatalf("shard %d has no %s column", i, backfill.SpineRowColumn)
		}
		for _, r := range got {
			if o, ok := owner[r[0].Str()]; ok && o != i {
				t.Fatalf("user %s in shards %d and %d", r[0].Str(), o, i)
			}
			owner[r[0].Str()] = i
		}
	}
	if _, err := backfill.Merge(filepath.Join(dir, "partial.parquet"), parts[:2]); err == nil {
		t.Error("merging two shards of three: no error")
	}
	if _, err := backfill.Merge(filepath.Join(dir, "merged.json"), parts); err == nil || !strings.Contains(err.Error(), "want a .parquet (or .csv) file") {
		t.Errorf("merging into a .json: %v, want an error", err)
	}
	// A shard built again with other flags, or of another spine with the
	// same name and rows, is of another run.
	inclusive := filepath.Join(dir, "part-1-inclusive.parquet")
	build(inclusive, backfill.Shard{Index: 1, Count: 3}, true)
	if _, err := backfill.Merge(filepath.Join(dir, "mixed.parquet"), []string{parts[0], inclusive, parts[2]}); err == nil || !strings.Contains(err.Error(), "shards of different runs, which differ in --inclusive or --timestamp-column") {
		t.Errorf("merging a shard built --inclusive with two built without: %v, want an error", err)
	}
	// As is one built after a view's TTL changed, which the view's
	// fingerprint leaves out but the values depend on.
	ttl := defs.Views[0].TTL
	defs.Views[0].TTL = ttl + time.Minute
	otherTTL := filepath.Join(dir, "part-1-ttl.parquet")
	build(otherTTL, backfill.Shard{Index: 1, Count: 3})
	defs.Views[0].TTL = ttl
	if _, err := backfill.Merge(filepath.Join(dir, "mixed.parquet"), []string{parts[0], otherTTL, parts[2]}); err == nil || !strings.HasSuffix(err.Error(), "shards of different runs, which differ in the features' definitions") {
		t.Errorf("merging a shard built with another TTL with two built before: %v, want an error", err)
	}
	merged = filepath.Join(dir, "merged.parquet")
	slices.Reverse(parts) // any order
	if n, err := backfill.Merge(merged, parts); err != nil || n != spineRows {
		t.Fatalf("merge: %d rows, %v", n, err)
	}
	_, want, _, err := offline.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	_, got, _, err := offline.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("merged shards differ from the whole:\n%v\n%v", got, want)
	}
	if a, b := readAll(t, whole), readAll(t, merged); !bytes.Equal(a, b) {
		t.Errorf("merged shards (%d bytes) are not the whole dataset's file (%d bytes)", len(b), len(a))
	}
	// The same dataset as CSV: a header, then the same values.
	csvOut := filepath.Join(dir, "whole.csv")
	build(csvOut, backfill.Shard{})
	f, err := os.Open(csvOut)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != len(want)+1 {
		t.Fatalf("CSV: %d records, %v", len(recs), err)
	}
	for r, row := range want {
		for j, v := range row {
			cell := ""
			switch v.Type() {
			case features.TypeString:
				cell = v.Str()
			case features.TypeInt:
				cell = strconv.FormatInt(v.Int(), 10)
			case features.TypeFloat:
				cell = strconv.FormatFloat(v.Float(), 'g', -1, 64)
			case features.TypeBool:
				cell = strconv.FormatBool(v.Bool())
			case features.TypeTimestamp:
				cell = v.Time().Format(time.RFC3339Nano)
			}
			if recs[r+1][j] != cell {
				t.Fatalf("CSV row %d column %s: %q, want %q", r, recs[0][j], recs[r+1][j], cell)
			}
		}
	}
	// The shards merged into a CSV are that file.
	mergedCSV := filepath.Join(dir, "merged.csv")
	if _, err := backfill.Merge(mergedCSV, parts); err != nil {
		t.Fatal(err)
	}
	if a, b := readAll(t, csvOut), readAll(t, mergedCSV); !bytes.Equal(a, b) {
		t.Errorf("shards merged into a CSV (%d bytes) are not the whole dataset's CSV (%d bytes)", len(b), len(a))
	}
	pw, _ := os.ReadFile(whole + ".profile.json")
	pm, _ := os.ReadFile(merged + ".profile.json")
	if len(pw) == 0 || string(pw) != string(pm) {
		t.Errorf("profiles differ:\n%s\n%s", pw, pm)
	}
	return whole, merged
}

// TestParts: a spine whose rows and features take more than half of
// --memory-limit is built in parts, one after another, into the file the
// dataset built at once is; a run killed part way keeps the parts it
// built, and the next run goes on from them, reading the event log as the
// killed run did (events written since are not counted), and leaves none
// behind.
func TestParts(t *testing.T) {
	defs, off, dir, spine, _ := smallRun(t, 11)
	refs := allFeatures(defs)
	build := func(ctx context.Context, out string, limit int64, log slog.Handler) (backfill.Summary, error) {
		return backfill.Dataset(ctx, backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: out, MemoryLimit: limit, TempDir: t.TempDir(), Logger: slog.New(log)})
	}
	whole := filepath.Join(dir, "whole.parquet")
	if sum, err := build(context.Background(), whole, 0, slog.DiscardHandler); err != nil || sum.Parts != 0 {
		t.Fatalf("1 GiB: %+v, %v; want the spine at once", sum, err)
	}
	// 100 rows of 3 columns and their features: about 2.4 KB a column.
	const limit = 16 << 10
	out := filepath.Join(dir, "parts", "train.parquet")
	// Killed as it starts the second part.
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	_, err := build(ctx, out, limit, logWatch{slog.NewTextHandler(&log, nil), func(r slog.Record) {
		if r.Message == "building part" && attr(r, "part") == "2" {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: %v, want %v; log:\n%s", err, context.Canceled, log.String())
	}
	if left := partFiles(t, out); len(left) != 2 || !strings.HasSuffix(left[0], "-0.parquet") || !strings.HasSuffix(left[1], "-marks.json") { // a part has no profile
		t.Fatalf("a run killed in its second part left %v, want the event log's marks and the first part", left)
	}
	// An ingest beside it writes more events, which a run from the start
	// would count.
	writeEvents(t, rand.New(rand.NewPCG(12, 13)), defs, off, time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC), 300)
	later := filepath.Join(dir, "later.parquet")
	if _, err := build(context.Background(), later, 0, slog.DiscardHandler); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readAll(t, whole), readAll(t, later)) {
		t.Fatal("the events written later changed no value: the test shows nothing")
	}
	log.Reset()
	sum, err := build(context.Background(), out, limit, slog.NewTextHandler(&log, nil))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Parts < 3 || sum.Rows != 100 {
		t.Fatalf("%+v: want 100 rows in 3 parts or more", sum)
	}
	if kept, built := strings.Count(log.String(), "part built by an earlier run, kept"), strings.Count(log.String(), `msg="building part"`); kept != 1 || built != sum.Parts-1 {
		t.Errorf("the run after a killed one kept %d parts and built %d, want 1 and %d; log:\n%s", kept, built, sum.Parts-1, log.String())
	}
	if a, b := readAll(t, whole), readAll(t, out); !bytes.Equal(a, b) {
		t.Errorf("built in parts (%d bytes), the dataset is not the one built at once (%d bytes)", len(b), len(a))
	}
	if a, b := readAll(t, whole+".profile.json"), readAll(t, out+".profile.json"); !bytes.Equal(a, b) {
		t.Errorf("built in parts, the profile differs:\n%s\n%s", b, a)
	}
	if left := partFiles(t, out); len(left) > 0 {
		t.Errorf("parts left behind: %v", left)
	}

	// Parts of another run (here another limit, so other parts) are
	// removed.
	ctx, cancel = context.WithCancel(context.Background())
	if _, err := build(ctx, out, limit, logWatch{slog.NewTextHandler(io.Discard, nil), func(r slog.Record) {
		if r.Message == "building part" && attr(r, "part") == "2" {
			cancel()
		}
	}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: %v, want %v", err, context.Canceled)
	}
	if sum2, err := build(context.Background(), out, 2*limit, slog.DiscardHandler); err != nil || sum2.Parts < 2 || sum2.Parts == sum.Parts {
		t.Fatalf("twice the limit: %+v, %v; want other parts than %d", sum2, err, sum.Parts)
	}
	if left := partFiles(t, out); len(left) > 0 {
		t.Errorf("another run's parts left behind: %v", left)
	}
	// As by a run without parts.
	ctx, cancel = context.WithCancel(context.Background())
	_, err = build(ctx, out, limit, logWatch{slog.NewTextHandler(io.Discard, nil), func(r slog.Record) {
		if r.Message == "building part" && attr(r, "part") == "2" {
			cancel()
		}
	}})
	if len(partFiles(t, out)) == 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("a killed run (%v) left no parts", err)
	}
	if sum, err := build(context.Background(), out, 0, slog.DiscardHandler); err != nil || sum.Parts != 0 {
		t.Fatalf("1 GiB: %+v, %v; want the spine at once", sum, err)
	}
	if left := partFiles(t, out); len(left) > 0 {
		t.Errorf("a killed run's parts left behind by a run without parts: %v", left)
	}
}

// TestPartsForText: a spine's strings count against --memory-limit, a
// CSV spine's by its bytes and a Parquet spine's by its values' bytes.
func TestPartsForText(t *testing.T) {
	defs, off, dir, _, rows := smallRun(t, 13)
	refs := allFeatures(defs)
	build := func(spine, out string, limit int64) backfill.Summary {
		t.Helper()
		sum, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: out, MemoryLimit: limit, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	// A note of 4 KB a row, 400 KB in all: more than half of the limit,
	// which holds the rows' cells twice over.
	rng := rand.New(rand.NewPCG(1, 2))
	type spineRow struct {
		User string `parquet:"user_id"`
		Time int64  `parquet:"label_time"`
		Row  string `parquet:"row"`
		Note string `parquet:"note"`
	}
	var in []spineRow
	var withNotes [][]string
	for _, r := range rows {
		note := make([]byte, 4096)
		for i := range note {
			note[i] = 'a' + byte(rng.IntN(26))
		}
		ms, _ := strconv.ParseInt(r[1], 10, 64)
		in = append(in, spineRow{r[0], ms, r[2], string(note)})
		withNotes = append(withNotes, append(slices.Clone(r), string(note)))
	}
	limit := int64(2 * 48 * len(rows) * (4 + 1 + len(refs)))
	csvSpine, pqSpine := filepath.Join(dir, "notes.csv"), filepath.Join(dir, "notes.parquet")
	writeCSV(t, csvSpine, []string{"user_id", "label_time", "row", "note"}, withNotes)
	if err := parquet.WriteFile(pqSpine, in); err != nil {
		t.Fatal(err)
	}
	for _, spine := range []string{csvSpine, pqSpine} {
		whole, parts := filepath.Join(dir, "whole.parquet"), filepath.Join(dir, "parts.parquet")
		build(spine, whole, 0)
		if sum := build(spine, parts, limit); sum.Parts < 2 {
			t.Errorf("%s: 400 KB of notes with a limit of %d bytes: %+v, want it built in parts", filepath.Base(spine), limit, sum)
		}
		if a, b := readAll(t, whole), readAll(t, parts); !bytes.Equal(a, b) {
			t.Errorf("%s: built in parts (%d bytes), the dataset is not the one built at once (%d bytes)", filepath.Base(spine), len(b), len(a))
		}
	}
}

// TestShardInParts builds shards too large for the memory limit in parts:
// each is the file built at once, and their merge the whole dataset.
func TestShardInParts(t *testing.T) {
	defs, off, dir, spine, _ := smallRun(t, 12)
	refs := allFeatures(defs)
	build := func(out string, shard backfill.Shard, limit int64) backfill.Summary {
		t.Helper()
		sum, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: out,
			MemoryLimit: limit, Shard: shard, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	whole := filepath.Join(dir, "whole.parquet")
	build(whole, backfill.Shard{}, 0)
	var shards []string
	for i := range 2 {
		shard := backfill.Shard{Index: i, Count: 2}
		atOnce := filepath.Join(dir, fmt.Sprintf("once-%d.parquet", i))
		if sum := build(atOnce, shard, 0); sum.Parts != 0 {
			t.Fatalf("shard %d at 1 GiB: %+v, want it at once", i, sum)
		}
		out := filepath.Join(dir, fmt.Sprintf("shard-%d", i), "train.parquet")
		// About 50 rows of 4 columns and their features: 6.4 KB a column.
		if sum := build(out, shard, 8<<10); sum.Parts < 2 {
			t.Fatalf("shard %d at 8 KiB: %+v, want it in parts", i, sum)
		}
		if a, b := readAll(t, atOnce), readAll(t, out); !bytes.Equal(a, b) {
			t.Errorf("shard %d built in parts (%d bytes) is not the one built at once (%d bytes)", i, len(b), len(a))
		}
		if a, b := readAll(t, atOnce+".profile.json"), readAll(t, out+".profile.json"); !bytes.Equal(a, b) {
			t.Errorf("shard %d built in parts, the profile differs:\n%s\n%s", i, b, a)
		}
		if left := partFiles(t, out); len(left) > 0 {
			t.Errorf("parts left behind: %v", left)
		}
		shards = append(shards, out)
	}
	merged := filepath.Join(dir, "merged.parquet")
	if _, err := backfill.Merge(merged, shards); err != nil {
		t.Fatal(err)
	}
	if a, b := readAll(t, whole), readAll(t, merged); !bytes.Equal(a, b) {
		t.Errorf("the shards built in parts merge to %d bytes, not the dataset built at once (%d bytes)", len(b), len(a))
	}
	// Each shard records which it is, one built in parts too, for merge
	// to name a shard missing or given twice.
	third := filepath.Join(dir, "third.parquet")
	build(third, backfill.Shard{Index: 0, Count: 3}, 0)
	for _, c := range []struct {
		in   []string
		want string
	}{
		{shards[:1], "merge: shard 1/2 missing: give every shard once"},
		{[]string{shards[1], shards[0], shards[1]}, "merge: shard 1/2 is given twice: " + shards[1] + " and " + shards[1]},
		{[]string{shards[0], third}, "merge: " + third + " is shard 0/3, and " + shards[0] + " one of 2: give the shards of one --shard count"},
	} {
		if _, err := backfill.Merge(filepath.Join(dir, "bad.parquet"), c.in); err == nil || err.Error() != c.want {
			t.Errorf("merge %v: %v, want %q", c.in, err, c.want)
		}
	}
}

// TestShardsLogMarks: shards of one run given one --log-marks file read
// the event log as the first of them found it, however much ingest writes
// before the others start, and merge to the dataset of that log.
func TestShardsLogMarks(t *testing.T) {
	defs, off, dir, spine, _ := smallRun(t, 14)
	refs := allFeatures(defs)
	var parts int
	build := func(out string, shard backfill.Shard, marks string, limit int64) error {
		sum, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: out, MemoryLimit: limit, Shard: shard, LogMarks: marks, TempDir: t.TempDir()})
		parts = sum.Parts
		return err
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	whole := filepath.Join(dir, "whole.parquet")
	must(build(whole, backfill.Shard{}, "", 0))
	marks := filepath.Join(dir, "run", "log-marks.json") // its directory made
	shard0, shard1 := filepath.Join(dir, "shard-0.parquet"), filepath.Join(dir, "shard-1", "train.parquet")
	must(build(shard0, backfill.Shard{Index: 0, Count: 2}, marks, 0))
	writeEvents(t, rand.New(rand.NewPCG(15, 16)), defs, off, time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC), 300)
	later := filepath.Join(dir, "later.parquet")
	must(build(later, backfill.Shard{}, "", 0))
	if bytes.Equal(readAll(t, whole), readAll(t, later)) {
		t.Fatal("the events written later changed no value: the test shows nothing")
	}
	// The second shard starts after those events, and is built in parts,
	// which read to the run's marks too.
	must(build(shard1, backfill.Shard{Index: 1, Count: 2}, marks, 8<<10))
	if parts < 2 {
		t.Fatalf("shard 1 at 8 KiB in %d parts, want 2 or more", parts)
	}
	if left := partFiles(t, shard1); len(left) > 0 {
		t.Errorf("parts left behind: %v", left)
	}
	merged := filepath.Join(dir, "merged.parquet")
	if _, err := backfill.Merge(merged, []string{shard1, shard0}); err != nil {
		t.Fatal(err)
	}
	if a, b := readAll(t, whole), readAll(t, merged); !bytes.Equal(a, b) {
		t.Errorf("the shards read to one run's marks merge to %d bytes, not the dataset of the log they marked (%d bytes)", len(b), len(a))
	}

	// A shard read to another run's marks is of another run.
	must(build(shard1, backfill.Shard{Index: 1, Count: 2}, filepath.Join(dir, "other-marks.json"), 0))
	if _, err := backfill.Merge(merged, []string{shard0, shard1}); err == nil || !strings.HasSuffix(err.Error(), "shards of different runs, which differ in the event log's marks (--log-marks)") {
		t.Errorf("shards read to different marks merged: %v", err)
	}
	// Shards started at once, while ingest writes, agree on the marks:
	// their merge is the dataset of the log they marked.
	racing := filepath.Join(dir, "racing", "log-marks.json")
	var wg sync.WaitGroup
	racers := make([]string, 4)
	errs := make([]error, len(racers))
	for i := range racers {
		racers[i] = filepath.Join(dir, "racing", fmt.Sprintf("shard-%d.parquet", i))
		wg.Go(func() {
			_, errs[i] = backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
				TimestampColumn: "label_time", Features: refs, Out: racers[i], Shard: backfill.Shard{Index: i, Count: len(racers)}, LogMarks: racing, TempDir: t.TempDir()})
		})
	}
	writeEvents(t, rand.New(rand.NewPCG(17, 18)), defs, off, time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC), 300)
	wg.Wait()
	must(errors.Join(errs...))
	must(build(whole, backfill.Shard{}, racing, 0))
	if _, err := backfill.Merge(merged, racers); err != nil {
		t.Fatal(err)
	}
	if a, b := readAll(t, whole), readAll(t, merged); !bytes.Equal(a, b) {
		t.Errorf("shards started at once merge to %d bytes, not the dataset of the log they marked (%d bytes)", len(b), len(a))
	}
	if left := partFiles(t, racing); len(left) != 2*len(racers) { // each shard and its profile
		t.Errorf("beside the marks: %v, want the shards and their profiles alone", left)
	}

	// --log-marks may not be the dataset, nor the spine.
	for _, marks := range []string{whole, spine} {
		if err := build(whole, backfill.Shard{}, marks, 0); err == nil || !strings.Contains(err.Error(), "--log-marks") {
			t.Errorf("--log-marks %s: %v, want it refused", marks, err)
		}
	}
	// A store with no event log (a mistyped --data-dir) is refused before
	// its marks, of no event, are recorded for the run's later jobs.
	emptyStore, err := offline.NewDir(t.TempDir())
	must(err)
	unmarked := filepath.Join(dir, "unmarked.json")
	if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: emptyStore, Spine: spine,
		TimestampColumn: "label_time", Features: refs, Out: whole, LogMarks: unmarked, TempDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no event log of source events") {
		t.Errorf("a store without events: %v, want it refused", err)
	}
	if _, err := os.Stat(unmarked); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a store without events left marks: %v", err)
	}
	// A file made empty beforehand (mktemp) is not marks.
	must(os.WriteFile(unmarked, nil, 0o644))
	if err := build(whole, backfill.Shard{}, unmarked, 0); err == nil || !strings.Contains(err.Error(), "is empty: give a file that is not there yet") {
		t.Errorf("an empty marks file: %v", err)
	}
	// Marks of no source the run reads are refused, not read as none.
	foreign := filepath.Join(dir, "foreign-marks.json")
	must(os.WriteFile(foreign, []byte(`{"clicks":{"0":41}}`), 0o644))
	if err := build(shard0, backfill.Shard{Index: 0, Count: 2}, foreign, 0); err == nil || !strings.Contains(err.Error(), "has no marks of source events") {
		t.Errorf("marks of another source: %v", err)
	}
}

// allFeatures returns a reference to every feature of every view.
func allFeatures(defs *features.Definitions) []string {
	var refs []string
	for _, v := range defs.Views {
		for _, f := range v.Features {
			refs = append(refs, v.Ref()+":"+f.Name)
		}
	}
	return refs
}

// logWatch is a slog handler that shows each record to fn first.
type logWatch struct {
	slog.Handler
	fn func(slog.Record)
}

func (h logWatch) Handle(ctx context.Context, r slog.Record) error {
	h.fn(r)
	return h.Handler.Handle(ctx, r)
}

// attr returns the value of a record's attribute key, as text.
func attr(r slog.Record, key string) (v string) {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
		}
		return v == ""
	})
	return v
}

// partFiles lists the files beside out, but for out and its profile.
func partFiles(t *testing.T, out string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); n != filepath.Base(out) && n != filepath.Base(out)+".profile.json" {
			names = append(names, n)
		}
	}
	return names
}

// tempWatch is a Progress that lists the temp dir once the events are
// spilled, when the computing step starts, and may cancel the run there.
type tempWatch struct {
	t      *testing.T
	dir    string
	cancel context.CancelFunc
	seen   []string
}

func (w *tempWatch) Step(name string, _ int64) {
	if name != "computing features" {
		return
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		w.t.Error(err)
	}
	for _, e := range entries {
		w.seen = append(w.seen, e.Name())
	}
	if w.cancel != nil {
		w.cancel()
	}
}

func (w *tempWatch) Add(int64) {}

// TestSpillsLeaveNothing: spilled events take no name in the temp dir, not
// even while the run reads them back, so a run killed at any point leaves
// nothing to clean up; a cancelled run returns its context's error.
func TestSpillsLeaveNothing(t *testing.T) {
	defs, off, dir, spine, _ := smallRun(t, 7)
	var refs []string
	for _, v := range defs.Views {
		refs = append(refs, v.Ref()+":"+v.Features[0].Name)
	}
	for _, cancelled := range []bool{false, true} {
		tmp := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		w := &tempWatch{t: t, dir: tmp}
		if cancelled {
			w.cancel = cancel
		}
		sum, err := backfill.Dataset(ctx, backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: filepath.Join(dir, "out.parquet"),
			MemoryLimit: 16 << 10, TempDir: tmp, Progress: w})
		cancel()
		switch {
		case cancelled && !errors.Is(err, context.Canceled):
			t.Errorf("cancelled run: %v, want %v", err, context.Canceled)
		case !cancelled && err != nil:
			t.Fatal(err)
		case !cancelled && sum.Buckets < 2:
			t.Fatalf("a 16 KiB memory limit used %d bucket: nothing spilled", sum.Buckets)
		}
		if len(w.seen) > 0 {
			t.Errorf("cancelled %v: the temp dir held %d files (%s, ...) while computing", cancelled, len(w.seen), w.seen[0])
		}
		if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
			t.Errorf("cancelled %v: the temp dir holds %v after the run (%v)", cancelled, left, err)
		}
	}
}

// TestStaleTempsRemoved: a run removes the temporary files that a killed
// run of the same dataset left beside it, a dataset and its profile, but
// not one still being written, nor another dataset's.
func TestStaleTempsRemoved(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	spine := writeSpine(t, dir, "user_id,ts\nu1,2026-01-01T00:00:00Z\n")
	old := time.Now().Add(-2 * time.Minute)
	files := map[string]bool{ // name: whether it should stay
		".out.parquet.tmp-1":              false,
		".out.parquet.tmp-1.profile.json": false,
		".out.parquet.tmp-2":              true, // modified just now: a run writing it
		".other.parquet.tmp-3":            true,
		"out.parquet.tmp-4":               true, // not hidden: not one of ours
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != ".out.parquet.tmp-2" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
		TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: filepath.Join(dir, "out.parquet")}); err != nil {
		t.Fatal(err)
	}
	for name, stays := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != stays {
			t.Errorf("%s: there after the run %v, want %v (%v)", name, got, stays, err)
		}
	}
	for _, name := range []string{"out.parquet", "out.parquet.profile.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

// TestEmptySpineShards: a spine without rows gives a dataset without rows,
// built at once or as shards merged.
func TestEmptySpineShards(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	spine := writeSpine(t, dir, "user_id,ts\n")
	whole := filepath.Join(dir, "whole.parquet")
	if sum, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
		TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: whole}); err != nil || sum.Rows != 0 {
		t.Fatalf("at once: %+v, %v; want 0 rows", sum, err)
	}
	var parts []string
	for i := range 2 {
		parts = append(parts, filepath.Join(dir, fmt.Sprintf("part-%d.parquet", i)))
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: parts[i], Shard: backfill.Shard{Index: i, Count: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "merged.parquet")
	if n, err := backfill.Merge(out, parts); err != nil || n != 0 {
		t.Fatalf("merge: %d rows, %v; want 0 rows", n, err)
	}
	for _, path := range []string{whole, out} {
		cols, rows, _, err := offline.ReadFile(path)
		if err != nil || len(rows) != 0 || len(cols) != 3 {
			t.Fatalf("%s: columns %v, %d rows, %v; want user_id, ts and the feature, no rows", path, cols, len(rows), err)
		}
	}
}

// cancelAt cancels a dataset's context once it reaches a step (by the
// step's name's prefix): at the step's first progress, or as it starts.
type cancelAt struct {
	step    string
	atStart bool
	cancel  context.CancelFunc
	mu      sync.Mutex
	in      bool // in the step
}

func (c *cancelAt) Step(name string, _ int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in = strings.HasPrefix(name, c.step); c.in && c.atStart {
		c.cancel()
	}
}

func (c *cancelAt) Add(int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.in {
		c.cancel()
	}
}

// TestDatasetCancel: a dataset stops when its context ends (Ctrl-C, say)
// while it computes the features or writes them, and leaves no file.
func TestDatasetCancel(t *testing.T) {
	defs, off := fraudStore(t)
	var rows strings.Builder
	rows.WriteString("user_id,ts\n")
	for i := range 100 {
		fmt.Fprintf(&rows, "u%d,2026-11-20T00:00:00Z\n", i)
	}
	for _, c := range []struct {
		step    string
		atStart bool
	}{{"computing features", false}, {"writing", true}} {
		for _, out := range []string{"out.parquet", "out.csv"} {
			t.Run(c.step+"/"+out, func(t *testing.T) {
				dir := t.TempDir()
				spine := writeSpine(t, dir, rows.String())
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				prog := &cancelAt{step: c.step, atStart: c.atStart, cancel: cancel}
				_, err := backfill.Dataset(ctx, backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine, TimestampColumn: "ts",
					Features: []string{"user_txn@1:txn_count_1h"}, Out: filepath.Join(dir, out), Progress: prog})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
				files, _ := filepath.Glob(filepath.Join(dir, "*"))
				if want := []string{spine}; !slices.Equal(files, want) {
					t.Errorf("files %v, want only the spine", files)
				}
			})
		}
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
