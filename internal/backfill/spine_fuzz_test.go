package backfill

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// FuzzReadCSV: any CSV spine is refused with a SpineError or read into rows
// of one typed value per column, join keys never null and every time set.
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
		sp, err := readSpine(path, "ts", keys)
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
	})
}
