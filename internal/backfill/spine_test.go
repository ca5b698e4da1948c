package backfill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/backfill"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/offline"
)

// fraudStore returns the fraud definitions and an offline store whose
// event log holds one event, of an entity no test asks for.
func fraudStore(t *testing.T) (*features.Definitions, *offline.Dir) {
	t.Helper()
	defs, off := emptyFraudStore(t)
	// A dataset refuses a store with no event log at all.
	ingesttest.WriteLog(t, off, defs.Source("transactions"), 1, `{"txn_id": "t0", "user_id": "nobody", "merchant_id": "nowhere", "amount": 1, "country": "FR", "ts": "2020-01-01T00:00:00Z"}`)
	return defs, off
}

// emptyFraudStore is the fraud example's definitions and an offline store
// without events.
func emptyFraudStore(t *testing.T) (*features.Definitions, *offline.Dir) {
	t.Helper()
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	off, err := offline.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return defs, off
}

// writeSpine writes a CSV spine, spine.csv, in dir.
func writeSpine(t *testing.T, dir, csv string) string {
	t.Helper()
	path := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// txnCounts builds a dataset of user_txn@1:txn_count_1h at the spine's
// "ts", and reads it back.
func txnCounts(t *testing.T, defs *features.Definitions, off *offline.Dir, spine string) ([]offline.Column, [][]features.Value) {
	t.Helper()
	out := filepath.Join(filepath.Dir(spine), "out.parquet")
	if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
		TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: out}); err != nil {
		t.Fatal(err)
	}
	cols, rows, _, err := offline.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return cols, rows
}

// TestBadSpine: a spine the dataset cannot use is refused with an error
// naming the file and, where there is one, the row.
func TestBadSpine(t *testing.T) {
	defs, off := fraudStore(t)
	// Twenty rows, the fifteenth (row 16 of the file) bad.
	rows20 := func(bad string) string {
		var b strings.Builder
		b.WriteString("user_id,ts\n")
		for i := range 20 {
			if i == 14 {
				b.WriteString(bad + "\n")
			} else {
				fmt.Fprintf(&b, "u%d,%d\n", i, 1000+i)
			}
		}
		return b.String()
	}
	for _, c := range []struct {
		name, csv string
		features  string // refs, comma-separated, or a feature service
		want      string
		shards    int // built in shards: the one holding the bad row says so
	}{
		{"no timestamp column", "user_id,when\nu1,2026-11-20T00:00:00Z\n", "user_txn@1:txn_count_1h",
			`spine.csv: no timestamp column "ts" (columns: user_id, when)`, 0},
		{"no timestamp column, many and long", "user_id," + strings.Repeat("x", 100) + ",c2,c3,c4,c5,c6,c7,c8,c9,c10,c11,c12,c13,c14,c15,c16,c17,c18,c19,c20,c21\nu1" + strings.Repeat(",", 21) + "\n", "user_txn@1:txn_count_1h",
			`(columns: user_id, ` + strings.Repeat("x", 64) + `…, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, and 2 more)`, 0},
		{"missing join key", "ts,label\n2026-11-20T00:00:00Z,1\n", "user_txn@1:txn_count_1h,merchant_txn@1:users_24h",
			`no column "merchant_id": the features' entities need it as a join key; no column "user_id": the features' entities need it as a join key`, 0},
		{"unparseable time", "user_id,ts\nu1,2026-11-20T00:00:00Z\nu2,yesterday\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 3 (the header is row 1): column "ts": "yesterday" is not an RFC 3339 time or epoch milliseconds`, 0},
		{"time past year 9999", "user_id,ts\nu1,10000-01-01T00:00:00Z\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 2 (the header is row 1): column "ts": "10000-01-01T00:00:00Z" is not an RFC 3339 time or epoch milliseconds`, 0},
		{"time before year 1", "user_id,ts\nu1,0000-12-31T00:00:00Z\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 2 (the header is row 1): column "ts": "0000-12-31T00:00:00Z" is outside years 1 to 9999`, 0},
		{"epoch time past year 9999", "user_id,ts\nu1,253402300800000\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 2 (the header is row 1): column "ts": 253402300800000 ms is outside years 1 to 9999`, 0},
		{"empty join key", "user_id,ts\nu1,1\n,2\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 3 (the header is row 1): join key "user_id" is empty`, 0},
		{"empty join keys", "user_id,merchant_id,ts\nu1,m1,1\n,,2\n", "user_txn@1:txn_count_1h,merchant_txn@1:users_24h",
			`spine.csv: row 3 (the header is row 1): join key "merchant_id" is empty`, 0},
		{"ragged row", "user_id,ts\nu1,1,extra\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 2 (the header is row 1): record on line 2: wrong number of fields`, 0},
		{"repeated column", "user_id,ts,ts\nu1,1,2\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 1 (the header is row 1): column 3: empty or repeated name "ts"`, 0},
		{"time with a fraction of a millisecond", "user_id,ts\nu1,1767226500000\nu1,1767226500000.5\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 3 (the header is row 1): column "ts": 1767226500000.5 is not whole epoch milliseconds`, 0},
		{"time with a fraction of a millisecond, among RFC 3339 times", "user_id,ts\nu1,2026-11-20T00:00:00Z\nu1,1.7672265000005e12\n", "user_txn@1:txn_count_1h",
			`spine.csv: row 3 (the header is row 1): column "ts": 1767226500000.5 is not whole epoch milliseconds`, 0},
		{"column Parquet cannot name", "user_id,ts,\"a,b\"\nu1,1,2\n", "user_txn@1:txn_count_1h",
			`spine.csv: its columns cannot be written to Parquet: column "a,b": name must not contain a comma or NUL`, 0},
		{"column named in another encoding", "user_id,ts,caf\xe9\nu1,1,2\n", "user_txn@1:txn_count_1h",
			`spine.csv: its columns cannot be written to Parquet: column "caf\xe9": name is not UTF-8`, 0},
		{"column named like a feature", "user_id,ts,user_txn__txn_count_1h\nu1,1,2\n", "user_txn@1:txn_count_1h",
			`column "user_txn__txn_count_1h" is also the name of a requested feature`, 0},
		{"unparseable time, in a shard", rows20("u14,yesterday"), "user_txn@1:txn_count_1h",
			`spine.csv: row 16 (the header is row 1): column "ts": "yesterday" is not an RFC 3339 time`, 4},
		{"empty join key, in a shard", rows20(",1014"), "user_txn@1:txn_count_1h",
			`spine.csv: row 16 (the header is row 1): join key "user_id" is empty`, 4},
		{"a row without line breaks", "user_id,ts\n" + strings.Repeat("u", 17<<20), "user_txn@1:txn_count_1h",
			`spine.csv: row 2 (the header is row 1): a record of more than 16 MiB: is the file CSV, a line break after each row?`, 0},
		{"a header without line breaks", strings.Repeat("u,", 9<<20), "user_txn@1:txn_count_1h",
			`spine.csv: row 1 (the header is row 1): no header: a record of more than 16 MiB`, 0},
		{"column named as a shard's row numbers", "user_id,ts,_spine_row\nu1,1,2\n", "user_txn@1:txn_count_1h",
			`spine.csv: column "_spine_row": the name is reserved for the row numbers of a shard's dataset`, 0},
		{"no column an on-demand feature reads", "user_id,merchant_id,ts\nu1,m1,1\n", "fraud_v1",
			`spine.csv: no column "amount": on-demand feature amount_vs_avg reads request.amount`, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			spine := writeSpine(t, dir, c.csv)
			cfg := backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine, TimestampColumn: "ts", Out: filepath.Join(dir, "out.parquet")}
			if strings.Contains(c.features, ":") {
				cfg.Features = strings.Split(c.features, ",")
			} else {
				cfg.Service = c.features
			}
			var err error
			for i := range max(c.shards, 1) {
				if c.shards > 0 {
					cfg.Shard = backfill.Shard{Index: i, Count: c.shards}
					cfg.Out = filepath.Join(dir, fmt.Sprintf("shard-%d.parquet", i))
				}
				if _, err = backfill.Dataset(context.Background(), cfg); err != nil {
					break
				}
			}
			var se *backfill.SpineError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant a SpineError containing %q", err, c.want)
			}
			if _, err := os.Stat(cfg.Out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("an output was written: %v", err)
			}
		})
	}
}

func TestBadRequest(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	spine := writeSpine(t, dir, "user_id,ts\nu1,1\n")
	for _, d := range []string{"d.parquet", "p.parquet.profile.json"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(spine, filepath.Join(dir, "link.csv")); err != nil {
		t.Fatal(err)
	}
	root := strings.TrimPrefix(off.String(), "file://")
	for _, c := range []struct {
		name     string
		cfg      backfill.DatasetConfig
		want     string
		sentinel error
	}{
		{"unknown features, all listed", backfill.DatasetConfig{Features: []string{"user_txn@1:nope", "ghost:x"}},
			"features: unknown feature: user_txn@1:nope: view user_txn@1 has no feature nope; ghost:x: no view ghost", features.ErrUnknownFeature},
		{"a feature listed twice", backfill.DatasetConfig{Features: []string{"user_txn@1:txn_count_1h", "user_txn@1:txn_count_1h", "user_txn:txn_count_1h"}},
			"user_txn@1:txn_count_1h is listed twice; user_txn:txn_count_1h is user_txn@1:txn_count_1h, already listed as user_txn@1:txn_count_1h", nil},
		{"unknown service", backfill.DatasetConfig{Service: "nope"}, `unknown feature service "nope"`, nil},
		{"both", backfill.DatasetConfig{Service: "fraud_v1", Features: []string{"user_txn:txn_count_1h"}}, "give --features or --feature-service (one of them)", nil},
		{"output not parquet", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: "out.json"}, `--out "out.json": want a .parquet (or .csv) file`, nil},
		{"output directory a file", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(spine, "out.parquet")}, "spine.csv/out.parquet\": no directory", nil},
		{"output a directory", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(dir, "d.parquet")}, "d.parquet\" is a directory", nil},
		{"output a URL", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: "s3://bucket/train.parquet"}, `--out "s3://bucket/train.parquet": want a local file, not a URL`, nil},
		{"profile a directory", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(dir, "p.parquet")}, "p.parquet\": its profile " + filepath.Join(dir, "p.parquet.profile.json") + " is a directory", nil},
		{"output the spine", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: spine}, "spine.csv\" is the spine", nil},
		{"output the spine by another name", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(dir, "link.csv")}, "link.csv\" is the spine", nil},
		{"shard to CSV", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Shard: backfill.Shard{Index: 0, Count: 2}, Out: filepath.Join(dir, "out.csv")}, "a shard's dataset is Parquet", nil},
		{"output in the event log", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(root, "events", "transactions", "date=2020-01-01", "train.parquet")}, "is in the offline store's logs (" + off.String() + ")", nil},
		{"output among feature logs", backfill.DatasetConfig{Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(root, "features", "new", "train.parquet")}, "is in the offline store's logs", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Definitions, cfg.Offline, cfg.Spine, cfg.TimestampColumn = defs, off, spine, "ts"
			if cfg.Out == "" {
				cfg.Out = filepath.Join(dir, "out.parquet")
			}
			_, err := backfill.Dataset(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) || c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
			if strings.Count(err.Error(), "unknown feature:") > 1 {
				t.Errorf("%v: says unknown feature more than once", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, "features")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused --out made its directory: %v", err)
	}
	if b, err := os.ReadFile(spine); err != nil || string(b) != "user_id,ts\nu1,1\n" {
		t.Errorf("the spine reads %q (%v) after the runs: want it as written", b, err)
	}
	// A spine wider than a dataset can be is refused, naming the counts
	// (the Parquet writer panicked past 65,535 columns).
	var header strings.Builder
	for i := range 65_598 {
		fmt.Fprintf(&header, ",c%d", i)
	}
	wide := writeSpine(t, t.TempDir(), "user_id,ts"+header.String()+"\nu1,1"+strings.Repeat(",", 65_598)+"\n")
	_, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: wide, TimestampColumn: "ts",
		Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(dir, "out.parquet")})
	if want := "65600 columns and 1 features: a dataset holds at most 65000 columns"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a spine of 65,600 columns: %v, want an error containing %q", err, want)
	}
	// A spine that is no regular file is refused, not waited on (a FIFO)
	// or read without end (a device).
	fifo := filepath.Join(dir, "fifo.csv")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []string{fifo, "/dev/zero"} {
		_, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: sp, TimestampColumn: "ts",
			Features: []string{"user_txn:txn_count_1h"}, Out: filepath.Join(dir, "out.parquet")})
		if want := "--spine: " + sp + ": not a regular file"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("spine %s: %v, want an error containing %q", sp, err, want)
		}
	}
}

// TestChangedDefinition: a view version whose definition changed since it
// was registered is refused, as ingest, serve and replay refuse it.
func TestChangedDefinition(t *testing.T) {
	ctx := context.Background()
	defs, off := fraudStore(t)
	if err := features.NewRegistry(off).Register(ctx, defs); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	changed, err := features.Parse("definitions.yaml", []byte(strings.Replace(string(src),
		"{name: txn_count_1h,   agg: count, window: 1h}", "{name: txn_count_1h,   agg: count, window: 2h}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spine := writeSpine(t, dir, "user_id,ts\nu1,1\n")
	_, err = backfill.Dataset(ctx, backfill.DatasetConfig{Definitions: changed, Offline: off, Spine: spine, TimestampColumn: "ts",
		Features: []string{"user_txn@1:amount_sum_1h"}, Out: filepath.Join(dir, "out.parquet")})
	if !errors.Is(err, features.ErrVersionNotBumped) || !strings.Contains(err.Error(), "view user_txn@1") {
		t.Fatalf("got %v, want ErrVersionNotBumped naming user_txn@1", err)
	}
}

// TestSpineCSV: a CSV spine's columns come through as written: a byte-order
// mark before the header (quoted, as Excel writes it) is dropped, codes and ids of digits that no int64
// holds as written stay strings, as do numbers a double does not hold with
// every digit, booleans as pandas or DuckDB write them
// are bools, and times may be written as RFC 3339 allows (a space or a
// lower-case t and z) or as epoch milliseconds.
func TestSpineCSV(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	// _partition and _offset are names the event log reserves, here a
	// string and a nullable int: a dataset gives them no meaning.
	spine := writeSpine(t, dir, "\ufeff\"user_id\",ts,_partition,id,_offset,x,fraud,flag,big\n"+
		"u1,2026-11-20 10:00:00+01:00,00501,12345678901234567891,42,1.5,True,true,12345678901234567\n"+
		"u2,2026-11-20t09:00:00.250z,10115,7,-3,2,False,1,1.5\n"+
		"u3,1795165200250,,1,,,,false,7e3\n"+
		"u4,1.79516520025e12,,1,,,,false,7e3\n") // epoch ms as a CSV column of numbers alone may write them
	// u4's events at 1795165200249, 250 and 251 ms: one is before its row.
	tx := func(ms string) string {
		return `{"txn_id": "t", "user_id": "u4", "merchant_id": "m", "amount": 1, "country": "FR", "ts": "2026-11-20T09:00:00.` + ms + `Z"}`
	}
	ingesttest.WriteLog(t, off, defs.Source("transactions"), 1, tx("249"), tx("250"), tx("251"))
	cols, rows := txnCounts(t, defs, off, spine)
	want := []offline.Column{{Name: "user_id", Type: features.TypeString}, {Name: "ts", Type: features.TypeString},
		{Name: "_partition", Type: features.TypeString}, {Name: "id", Type: features.TypeString}, {Name: "_offset", Type: features.TypeInt},
		{Name: "x", Type: features.TypeFloat}, {Name: "fraud", Type: features.TypeBool}, {Name: "flag", Type: features.TypeString},
		{Name: "big", Type: features.TypeString}, {Name: "user_txn__txn_count_1h", Type: features.TypeInt}}
	if !slices.Equal(cols, want) {
		t.Fatalf("columns %v, want %v", cols, want)
	}
	if z, id := rows[0][2], rows[0][3]; z.Str() != "00501" || id.Str() != "12345678901234567891" {
		t.Errorf("_partition %v, id %v: want them as written", z, id)
	}
	if n, x, null := rows[1][4], rows[1][5], rows[2][4]; n != features.Int(-3) || x != features.Float(2) || !null.IsNull() {
		t.Errorf("_offset %v, x %v, _offset %v: want -3, 2.0 and null", n, x, null)
	}
	if a, b, c := rows[0][6], rows[1][6], rows[2][6]; a != features.Bool(true) || b != features.Bool(false) || !c.IsNull() {
		t.Errorf("fraud %v, %v, %v: want true, false and null", a, b, c)
	}
	if n := rows[3][9]; n != features.Int(1) {
		t.Errorf("u4 at 1.79516520025e12 ms: txn_count_1h %v, want 1 (the event 1 ms before)", n)
	}
	if a, b, c := rows[0][8], rows[1][8], rows[2][8]; a.Str() != "12345678901234567" || b.Str() != "1.5" || c.Str() != "7e3" {
		t.Errorf("big %v, %v, %v: want them as written", a, b, c)
	}
}

// TestSpineInvalidUTF8: a CSV spine's join key holding bytes that are not
// UTF-8 names the entity ingest logged under the same key: both replace
// each such byte with U+FFFD.
func TestSpineInvalidUTF8(t *testing.T) {
	defs, off := fraudStore(t)
	ingesttest.WriteLog(t, off, defs.Source("transactions"), 0, `{"txn_id": "t1", "user_id": "caf`+"\xe9"+`", "merchant_id": "m1", "amount": 5, "country": "FR", "ts": "2026-11-20T09:00:00Z"}`)
	dir := t.TempDir()
	_, rows := txnCounts(t, defs, off, writeSpine(t, dir, "user_id,ts\ncaf\xe9,2026-11-20T09:30:00Z\n"))
	if user, n := rows[0][0], rows[0][2]; user.Str() != "caf\ufffd" || n != features.Int(1) {
		t.Errorf("user_id %q, txn_count_1h %v: want \"caf\\ufffd\" and 1", user.Str(), n)
	}
}

// TestSpineEpochSeconds: integer spine times are epoch milliseconds; a
// spine of epoch seconds reads as January 1970, and the run says so.
func TestSpineEpochSeconds(t *testing.T) {
	defs, off := fraudStore(t)
	for _, c := range []struct {
		csv  string
		warn bool
	}{
		{"user_id,ts\nu1,1795170600\nu2,1795170660\n", true},
		{"user_id,ts\nu1,1795170600000\nu2,1795170660\n", false},
	} {
		dir := t.TempDir()
		var log bytes.Buffer
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: writeSpine(t, dir, c.csv),
			TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: filepath.Join(dir, "out.parquet"),
			Logger: slog.New(slog.NewTextHandler(&log, nil))}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(log.String(), "are they epoch seconds?"); got != c.warn {
			t.Errorf("%q: warned %v, want %v; log:\n%s", c.csv, got, c.warn, log.String())
		}
	}
}

// TestJoinKeyOfTwoTypes: a join key that one source declares a string and
// another an int is read the same whatever the order of the features: a
// CSV spine's as written, and a Parquet spine's string or int column
// alike, as a lookup takes either. A column of another type is refused.
func TestJoinKeyOfTwoTypes(t *testing.T) {
	defs, err := features.Parse("defs.yaml", []byte(`project: p
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: a, topic: a, event_time: ts, schema: {user_id: string, ts: timestamp}}
  - {name: b, topic: b, event_time: ts, schema: {user_id: int, ts: timestamp}}
feature_views:
  - {name: va, version: 1, entity: user, source: a, features: [{name: c, agg: count}]}
  - {name: vb, version: 1, entity: user, source: b, features: [{name: c, agg: count}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	off, err := offline.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ingesttest.WriteLog(t, off, defs.Source("a"), 0, `{"user_id": "nobody", "ts": 0}`)
	dir := t.TempDir()
	run := func(spine string, refs ...string) ([]offline.Column, error) {
		out := filepath.Join(dir, "out.parquet")
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "ts", Features: refs, Out: out}); err != nil {
			return nil, err
		}
		cols, _, _, err := offline.ReadFile(out)
		return cols, err
	}
	csv := writeSpine(t, dir, "user_id,ts\n007,1795165200250\n")
	for _, refs := range [][]string{{"va@1:c", "vb@1:c"}, {"vb@1:c", "va@1:c"}} {
		cols, err := run(csv, refs...)
		if err != nil || cols[0].Type != features.TypeString {
			t.Errorf("CSV spine, features %v: %v, columns %v; want user_id a string column, as written", refs, err, cols)
		}
	}
	for _, c := range []struct {
		name string
		cols []offline.Column
		row  []features.Value
		err  string
	}{
		{"int", []offline.Column{{Name: "user_id", Type: features.TypeInt}, {Name: "ts", Type: features.TypeTimestamp}},
			[]features.Value{features.Int(7), features.Timestamp(1795165200250)}, ""},
		{"string", []offline.Column{{Name: "user_id", Type: features.TypeString}, {Name: "ts", Type: features.TypeTimestamp}},
			[]features.Value{features.String("7"), features.Timestamp(1795165200250)}, ""},
		{"float", []offline.Column{{Name: "user_id", Type: features.TypeFloat}, {Name: "ts", Type: features.TypeTimestamp}},
			[]features.Value{features.Float(7), features.Timestamp(1795165200250)}, `join key column "user_id" is float, want string or int`},
	} {
		path := filepath.Join(dir, c.name+".parquet")
		var buf bytes.Buffer
		w, err := offline.NewWriter(&buf, c.cols, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([][]features.Value{c.row}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, refs := range [][]string{{"va@1:c", "vb@1:c"}, {"vb@1:c", "va@1:c"}} {
			_, err := run(path, refs...)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("%s spine, features %v: %v, want %q", c.name, refs, err, c.err)
			}
		}
	}
}

// TestNoEventLog: a store with no event log of any source the dataset
// reads is refused as the wrong store, before the output is written.
func TestNoEventLog(t *testing.T) {
	defs, off := emptyFraudStore(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.parquet")
	_, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off,
		Spine: writeSpine(t, dir, "user_id,ts\nu1,2026-11-20T09:30:00Z\n"), TimestampColumn: "ts", Features: []string{"user_txn@1:txn_count_1h"}, Out: out})
	if err == nil || !strings.Contains(err.Error(), "no event log of source transactions in offline store "+off.String()) {
		t.Errorf("got %v, want an error naming the source and the store", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dataset was written (%v)", err)
	}
}
