package backfill_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/backfill"
	"github.com/quiver-ml/quiver/store/offline"
)

// dynamicRun writes events of eight users and a spine of ten users (two
// without events) whose label is set for u1 alone, for a feature service
// with on-demand features whose type their values decide: echo, a string
// where the label is set, and count, an int where the user has events.
func dynamicRun(t *testing.T) (defs *features.Definitions, off *offline.Dir, dir, spine string) {
	defs, err := features.Parse("defs.yaml", []byte(`
project: t
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: events, topic: events, format: json, event_time: ts, allowed_lateness: 1h,
     schema: {user_id: string, amount: float, n: int, cat: string, flag: bool, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: events, features: [{name: c, agg: count}]}
feature_services:
  - name: svc
    features: [v@1:c]
    on_demand:
      - {name: echo, expr: "request.label"}
      - {name: count, expr: "f['v@1:c']"}
`))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if off, err = offline.NewDir(filepath.Join(dir, "offline")); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)
	writeEvents(t, rand.New(rand.NewPCG(3, 4)), defs, off, start, 200)
	var rows [][]string
	for i := range 40 {
		user, label := fmt.Sprintf("u%d", i%10), ""
		if user == "u1" {
			label = "yes"
		}
		rows = append(rows, []string{user, strconv.FormatInt(start.Add(time.Duration(i)*time.Hour).UnixMilli(), 10), label})
	}
	spine = filepath.Join(dir, "spine.csv")
	writeCSV(t, spine, []string{"user_id", "label_time", "label"}, rows)
	return defs, off, dir, spine
}

// TestMergeDynamicOnDemand: shards of a feature service whose on-demand
// features take their type from their values merge into the dataset built
// at once, though a shard where such a feature is all null (or that has no
// rows) cannot tell its type.
func TestMergeDynamicOnDemand(t *testing.T) {
	defs, off, dir, spine := dynamicRun(t)
	build := func(out string, shard backfill.Shard) {
		t.Helper()
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Service: "svc", Out: out, Shard: shard, TempDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	whole := filepath.Join(dir, "whole.parquet")
	build(whole, backfill.Shard{})
	var parts []string
	echoTypes := map[features.Type]bool{}
	for i := range 3 {
		parts = append(parts, filepath.Join(dir, fmt.Sprintf("shard-%d.parquet", i)))
		build(parts[i], backfill.Shard{Index: i, Count: 3})
		cols, _, _, err := offline.ReadFile(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		echoTypes[cols[slices.IndexFunc(cols, func(c offline.Column) bool { return c.Name == "echo" })].Type] = true
	}
	if !echoTypes[features.TypeString] || !echoTypes[features.TypeFloat] {
		t.Fatalf("echo is %v in the shards: want a string shard and a typeless (double) one", echoTypes)
	}
	merged := filepath.Join(dir, "merged.parquet")
	if n, err := backfill.Merge(merged, parts); err != nil || n != 40 {
		t.Fatalf("merge: %d rows, %v; want 40 rows", n, err)
	}
	wantCols, want, _, err := offline.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	gotCols, got, _, err := offline.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotCols, wantCols) {
		t.Errorf("merged columns %v, want the whole's %v", gotCols, wantCols)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("merged shards differ from the whole:\n%v\n%v", got, want)
	}
	pw, _ := os.ReadFile(whole + ".profile.json")
	pm, _ := os.ReadFile(merged + ".profile.json")
	if len(pw) == 0 || string(pw) != string(pm) {
		t.Errorf("profiles differ:\n%s\n%s", pw, pm)
	}
}

// writeShard writes a shard's dataset of one column x, of type typ, and
// SpineRowColumn, row i holding x[i] and spine row first+i, with meta
// beside that of a shard of a spine of 2 rows.
func writeShard(t *testing.T, path string, typ features.Type, first int, x []features.Value, meta map[string]string) {
	t.Helper()
	cols := []offline.Column{{Name: "x", Type: typ}, {Name: backfill.SpineRowColumn, Type: features.TypeInt}}
	m := map[string]string{backfill.MetaSpine: "spine.csv", backfill.MetaFeatures: "x", backfill.MetaSpineRows: "2"}
	for k, v := range meta {
		m[k] = v
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := offline.NewWriter(f, cols, m)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]features.Value
	for i, v := range x {
		rows = append(rows, []features.Value{v, features.Int(int64(first + i))})
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMergeTypes: shards whose column types differ merge only where the
// column's values decide its type (MetaDynamic), ints counting as floats
// as in a dataset built at once; otherwise the error names the column, its
// types and the shards (A and B in wantErr).
func TestMergeTypes(t *testing.T) {
	dynamic := map[string]string{backfill.MetaDynamic: "x"}
	for _, c := range []struct {
		name       string
		a, b       features.Type
		av, bv     features.Value
		meta       map[string]string
		want       features.Type
		wantErr    string
		wantValues string
	}{
		{"dynamic int and float", features.TypeInt, features.TypeFloat, features.Int(2), features.Float(0.5), dynamic, features.TypeFloat, "", "[[2] [0.5]]"},
		{"dynamic null and string", features.TypeFloat, features.TypeString, features.Null, features.String("s"), dynamic, features.TypeString, "", `[[null] ["s"]]`},
		{"dynamic string and int", features.TypeString, features.TypeInt, features.String("s"), features.Int(1), dynamic, 0,
			`merge: column "x" is string in A but int in B`, ""},
		{"static int and string", features.TypeInt, features.TypeString, features.Int(1), features.String("s"), nil, 0,
			`merge: column "x" is int in A but string in B`, ""},
		{"static null and string", features.TypeFloat, features.TypeString, features.Null, features.String("s"), nil, 0,
			`merge: column "x" is float in A but string in B`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a.parquet"), filepath.Join(dir, "b.parquet")
			writeShard(t, a, c.a, 0, []features.Value{c.av}, c.meta)
			writeShard(t, b, c.b, 1, []features.Value{c.bv}, c.meta)
			out := filepath.Join(dir, "out.parquet")
			_, err := backfill.Merge(out, []string{a, b})
			if c.wantErr != "" {
				want := strings.NewReplacer("A", a, "B", b).Replace(c.wantErr)
				if err == nil || err.Error() != want {
					t.Fatalf("got %v, want %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cols, rows, _, err := offline.ReadFile(out)
			if err != nil || len(cols) != 1 || cols[0].Type != c.want || fmt.Sprint(rows) != c.wantValues {
				t.Fatalf("merged: %v %v (%v), want x %s: %s", cols, rows, err, c.want, c.wantValues)
			}
		})
	}
}

// TestOneShard: --shard 0/1 builds a shard that merges alone into the
// dataset built at once, and its directory is made if missing.
func TestOneShard(t *testing.T) {
	defs, off, dir, spine := dynamicRun(t)
	whole, part := filepath.Join(dir, "whole.parquet"), filepath.Join(dir, "shards", "today", "shard-0.parquet")
	for out, shard := range map[string]backfill.Shard{whole: {}, part: {Index: 0, Count: 1}} {
		if _, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Service: "svc", Out: out, Shard: shard, TempDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(dir, "merged.parquet")
	if n, err := backfill.Merge(merged, []string{part}); err != nil || n != 40 {
		t.Fatalf("merge: %d rows, %v; want 40 rows", n, err)
	}
	_, want, _, err := offline.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	_, got, _, err := offline.ReadFile(merged)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("merged shard 0/1 differs from the whole (%v):\n%v\n%v", err, got, want)
	}
}

// profileBlocker is a Progress that, as the dataset starts to be written,
// puts a directory where its profile goes, after the checks done up front.
type profileBlocker struct {
	t       *testing.T
	profile string
}

func (p *profileBlocker) Step(name string, _ int64) {
	if strings.HasPrefix(name, "writing") {
		if err := os.Mkdir(p.profile, 0o755); err != nil {
			p.t.Error(err)
		}
	}
}

func (p *profileBlocker) Add(int64) {}

// TestDatasetWithProfile: a dataset whose profile cannot be written is not
// put in place either: a dataset never goes without its profile.
func TestDatasetWithProfile(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	spine := writeSpine(t, dir, "user_id,ts\nu1,2026-11-20T00:00:00Z\n")
	out := filepath.Join(dir, "out.parquet")
	_, err := backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine, TimestampColumn: "ts",
		Features: []string{"user_txn@1:txn_count_1h"}, Out: out, Progress: &profileBlocker{t: t, profile: out + ".profile.json"}})
	if err == nil || !strings.Contains(err.Error(), "write profile") {
		t.Fatalf("got %v, want an error writing the profile", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if want := []string{out + ".profile.json", spine}; !slices.Equal(files, want) {
		t.Errorf("files %v, want only %v", files, want)
	}
}

// TestMergeOut: merge refuses up front an --out it cannot write whole, or
// that is one of its shards.
func TestMergeOut(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.parquet"), filepath.Join(dir, "b.parquet")
	writeShard(t, a, features.TypeInt, 0, []features.Value{features.Int(1)}, nil)
	writeShard(t, b, features.TypeInt, 1, []features.Value{features.Int(2)}, nil)
	if err := os.Mkdir(filepath.Join(dir, "d.parquet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "p.parquet.profile.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ out, want string }{
		{"d.parquet", `d.parquet" is a directory`},
		{"p.parquet", `p.parquet": its profile ` + filepath.Join(dir, "p.parquet.profile.json") + " is a directory"},
		{"a.parquet", `a.parquet" is the shard ` + a},
		{"a.parquet/out.parquet", `a.parquet/out.parquet": no directory`},
	} {
		if _, err := backfill.Merge(filepath.Join(dir, c.out), []string{a, b}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--out %s: got %v, want an error containing %q", c.out, err, c.want)
		}
	}
	if _, rows, _, err := offline.ReadFile(a); err != nil || len(rows) != 1 {
		t.Errorf("shard a: %d rows, %v: want it as written", len(rows), err)
	}
	out := filepath.Join(dir, "new", "merged.parquet")
	if n, err := backfill.Merge(out, []string{b, a}); err != nil || n != 2 {
		t.Fatalf("merge into a new directory: %d rows, %v", n, err)
	}
}
