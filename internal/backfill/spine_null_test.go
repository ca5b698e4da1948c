package backfill_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/quiver-ml/quiver/features"
)

// TestSpineNullColumn: a Parquet spine with a column of Arrow's null type
// (pandas writes one for labels not known yet, a column of None) is a
// spine like any other: the column comes out as it went in, all nulls.
func TestSpineNullColumn(t *testing.T) {
	defs, off := fraudStore(t)
	dir := t.TempDir()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "user_id", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
		{Name: "label", Type: arrow.Null, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"u1", "u2"}, nil)
	b.Field(1).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1_795_165_200_000, 1_795_165_260_000}, nil)
	b.Field(2).(*array.NullBuilder).AppendNulls(2)
	rec := b.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	var buf bytes.Buffer
	if err := pqarrow.WriteTable(tbl, &buf, 1024, nil, pqarrow.NewArrowWriterProperties()); err != nil {
		t.Fatal(err)
	}
	spine := filepath.Join(dir, "spine.parquet")
	if err := os.WriteFile(spine, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cols, rows := txnCounts(t, defs, off, spine)
	if len(cols) != 4 || cols[2].Name != "label" || cols[2].Type != features.TypeNull {
		t.Fatalf("columns %v, want user_id, ts, then label of the null type", cols)
	}
	for i, r := range rows {
		if !r[2].IsNull() || r[0].Str() != []string{"u1", "u2"}[i] {
			t.Errorf("row %d: %v, want its user and a null label", i, r)
		}
	}
}
