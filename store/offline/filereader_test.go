package offline_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestFileReader: a file read a row group at a time gives each group's
// rows, in order, as ReadFile gives them all, with its columns and
// metadata.
func TestFileReader(t *testing.T) {
	cols := []offline.Column{{Name: "row", Type: features.TypeInt}, {Name: "label", Type: features.TypeString}, {Name: "x", Type: features.TypeFloat}}
	path := filepath.Join(t.TempDir(), "groups.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := offline.NewWriter(f, cols, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{3, 1000, 1}
	n := 0
	for _, size := range sizes {
		rows := make([][]features.Value, size)
		for i := range rows {
			x := features.Float(float64(n) / 3)
			if n%7 == 0 {
				x = features.Null
			}
			rows[i] = []features.Value{features.Int(int64(n)), features.String(fmt.Sprint("row ", n%5)), x}
			n++
		}
		if err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	wantCols, want, wantMeta, err := offline.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := offline.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !reflect.DeepEqual(r.Columns(), wantCols) || !reflect.DeepEqual(r.Meta(), wantMeta) || r.NumRows() != int64(n) {
		t.Fatalf("columns %v, meta %v, %d rows; want %v, %v, %d", r.Columns(), r.Meta(), r.NumRows(), wantCols, wantMeta, n)
	}
	if r.RowGroups() != len(sizes) {
		t.Fatalf("%d row groups, want %d", r.RowGroups(), len(sizes))
	}
	var got [][]features.Value
	for g, size := range sizes {
		rows, err := r.RowGroup(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != size {
			t.Errorf("group %d: %d rows, want %d", g, len(rows), size)
		}
		got = append(got, rows...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the row groups' rows differ from the file's")
	}

	if _, err := offline.OpenFile(filepath.Join(t.TempDir(), "missing.parquet")); err == nil {
		t.Error("opened a missing file")
	}
}
