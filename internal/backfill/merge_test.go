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

// writeGroups writes rows of cols as a shard of a spine of spineRows rows,
// in row groups of at most group rows.
func writeGroups(t *testing.T, path string, cols []offline.Column, rows [][]features.Value, spineRows, group int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := offline.NewWriter(f, cols, map[string]string{
		backfill.MetaSpine: "spine.csv", backfill.MetaFeatures: "x", backfill.MetaSpineRows: strconv.Itoa(spineRows),
	})
	if err != nil {
		t.Fatal(err)
	}
	for len(rows) > 0 {
		n := min(group, len(rows))
		if err := w.Write(rows[:n]); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMergeRowGroups: shards of many row groups each, their rows spread
// unevenly, merge a row group at a time into the spine's order; a shard
// out of order, a row in two shards and a shard missing are errors.
func TestMergeRowGroups(t *testing.T) {
	cols := []offline.Column{{Name: "user_id", Type: features.TypeString}, {Name: backfill.SpineRowColumn, Type: features.TypeInt}, {Name: "x", Type: features.TypeFloat}}
	const spineRows, shards = 1000, 3
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	parts := make([][][]features.Value, shards)
	var want [][]features.Value
	for r := range spineRows {
		x := features.Float(rng.NormFloat64())
		if r%10 == 0 {
			x = features.Null
		}
		user := features.String(fmt.Sprint("u", rng.IntN(50)))
		want = append(want, []features.Value{user, x})
		s := min(rng.IntN(shards+2), shards-1) // the last shard has the most
		parts[s] = append(parts[s], []features.Value{user, features.Int(int64(r)), x})
	}
	var paths []string
	for s, rows := range parts {
		path := filepath.Join(dir, fmt.Sprintf("part-%d.parquet", s))
		writeGroups(t, path, cols, rows, spineRows, 7+s*20)
		paths = append(paths, path)
	}
	merged := filepath.Join(dir, "merged.parquet")
	if n, err := backfill.Merge(merged, paths); err != nil || n != spineRows {
		t.Fatalf("merge: %d rows, %v", n, err)
	}
	gotCols, got, _, err := offline.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if names := []string{gotCols[0].Name, gotCols[1].Name}; len(gotCols) != 2 || names[0] != "user_id" || names[1] != "x" {
		t.Fatalf("columns %v, want user_id and x", gotCols)
	}
	if !slices.EqualFunc(got, want, func(a, b []features.Value) bool { return slices.EqualFunc(a, b, features.Value.Equal) }) {
		t.Error("merged rows differ from the spine's")
	}
	// The profile is the one of the same rows from one shard.
	var all [][]features.Value
	for r, row := range want {
		all = append(all, []features.Value{row[0], features.Int(int64(r)), row[1]})
	}
	one := filepath.Join(dir, "one.parquet")
	writeGroups(t, one, cols, all, spineRows, spineRows)
	oneMerged := filepath.Join(dir, "one-merged.parquet")
	if _, err := backfill.Merge(oneMerged, []string{one}); err != nil {
		t.Fatal(err)
	}
	if a, b := readText(t, merged+".profile.json"), readText(t, oneMerged+".profile.json"); a != b {
		t.Errorf("profile of the shards:\n%s\nof one shard:\n%s", a, b)
	}

	reversed := slices.Clone(parts[0])
	slices.Reverse(reversed)
	moved := slices.Clone(parts[0]) // its last row numbered past the spine
	moved[len(moved)-1] = []features.Value{moved[len(moved)-1][0], features.Int(spineRows), moved[len(moved)-1][2]}
	twice := slices.Clone(parts[0]) // its second row numbered as its first
	twice[1] = []features.Value{twice[1][0], twice[0][1], twice[1][2]}
	for name, c := range map[string]struct {
		rows    [][]features.Value
		others  []string
		wantErr string
	}{
		"reversed": {reversed, paths[1:], "is missing or repeated, or a shard is out of order"},
		"twice":    {twice, paths[1:], "_spine_row are not in increasing order"},
		"moved":    {moved, paths[1:], fmt.Sprintf("spine row %d is missing or repeated", parts[0][len(parts[0])-1][1].Int())},
		"missing":  {parts[0], paths[1:2], "give every shard once"},
	} {
		bad := filepath.Join(dir, name+".parquet")
		writeGroups(t, bad, cols, c.rows, spineRows, 7)
		_, err := backfill.Merge(filepath.Join(dir, name+"-merged.parquet"), append([]string{bad}, c.others...))
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.wantErr)
		}
		if _, err := os.Stat(filepath.Join(dir, name+"-merged.parquet")); !os.IsNotExist(err) {
			t.Errorf("%s: a merged file was left: %v", name, err)
		}
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
