package backfill

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// FuzzReadCSV: any CSV spine is refused with a SpineError or read into rows
// of one typed value per column, join keys never null and every time set;
// read as two shards, it gives the same rows and columns, each row in one
// shard, numbered by its place in the spine.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"user_id,ts,label\nu1,2026-11-20T00:00:00Z,1\nu2,1763596800000,0\n",
		"user_id,ts\n\"a,b\",1\n",
		"user_id,ts\nu1,yesterday\n",
		"ts,user_id\n1,\n",
		"user_id,ts,x\nu1,1,1.5\nu2,2,abc\n",
		"user_id,ts,x\nu1,1,12345678901234567\nu2,2,1.5\nu3,3,4.9e-324\n",
		"user_id,ts,b\nu1,1,True\nu2,2,false\nu3,3,\n",
		"",
	} {
		f.Add([]byte(s))
	}
	keys := map[string]features.Type{"user_id": features.TypeString}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "spine.csv")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sp, err := readSpine(path, "ts", keys, nil)
		if err != nil {
			if _, ok := err.(*SpineError); !ok {
				t.Fatalf("error %T %v is not a SpineError", err, err)
			}
			return
		}
		if len(sp.times) != sp.len() {
			t.Fatalf("%d times for %d rows", len(sp.times), sp.len())
		}
		k := index(sp.cols, "user_id")
		for r := range sp.len() {
			row := sp.table.row(nil, r)
			if len(row) != len(sp.cols) {
				t.Fatalf("a row of %d values for %d columns", len(row), len(sp.cols))
			}
			if row[k].Type() != features.TypeString {
				t.Fatalf("join key %v", row[k])
			}
			for j, v := range row {
				if !v.IsNull() && v.Type() != sp.cols[j].Type {
					t.Fatalf("column %s is %s, holds %v", sp.cols[j].Name, sp.cols[j].Type, v)
				}
			}
		}
		checkShards(t, path, keys, sp)
	})
}

// checkShards reads the spine at path as two shards and checks that they
// hold the rows of sp, whole, between them.
func checkShards(t *testing.T, path string, keys map[string]features.Type, sp *spine) {
	t.Helper()
	seen := make([]bool, sp.len())
	for i := range 2 {
		sh, err := readSpine(path, "ts", keys, &spineShard{Shard: Shard{Index: i, Count: 2}, keys: []string{"user_id"}})
		if err != nil {
			t.Fatalf("shard %d/2: %v; the whole spine read", i, err)
		}
		if n := len(sh.cols); n != len(sp.cols)+1 || sh.cols[n-1].Name != SpineRowColumn || !slices.Equal(sh.cols[:n-1], sp.cols) {
			t.Fatalf("shard %d/2: columns %v, want %v and %s", i, sh.cols, sp.cols, SpineRowColumn)
		}
		if sh.spineRows != sp.len() {
			t.Fatalf("shard %d/2: of %d spine rows, want %d", i, sh.spineRows, sp.len())
		}
		for r := range sh.len() {
			row := sh.table.row(nil, r)
			at := int(row[len(row)-1].Int())
			if at < 0 || at >= sp.len() || seen[at] {
				t.Fatalf("shard %d/2: row %d numbered %d: out of range or in both shards", i, r, at)
			}
			seen[at] = true
			if want := sp.table.row(nil, at); !slices.Equal(row[:len(row)-1], want) || sh.times[r] != sp.times[at] {
				t.Fatalf("shard %d/2: row %d is %v at %d, spine row %d is %v at %d", i, r, row, sh.times[r], at, want, sp.times[at])
			}
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		t.Fatalf("spine row %d in no shard", i)
	}
}
