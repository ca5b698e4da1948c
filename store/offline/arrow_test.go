package offline_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestArrowReadsLog reads the files back with an independent implementation,
// Apache Arrow's Parquet reader, as pyarrow, DuckDB and Spark would.
func TestArrowReadsLog(t *testing.T) {
	ctx := context.Background()
	d := diskStore(t)
	rows := [][]features.Value{
		eventRow("a", 12.5, ms("2026-03-01T23:59:59.250Z"), 3, 100),
		eventRow("", 0, ms("2026-03-02T00:00:00.000Z"), 3, 101),
		eventRow("c", -0.25, ms("2026-03-01T23:59:59.999Z"), 7, 102),
	}
	b := offline.Batch{
		Dir: "events/transactions", Columns: eventColumns, TimeColumn: eventTimeColumn,
		Rows: rows, Stream: "transactions/3", FirstOffset: 100, LastOffset: 102,
	}
	if err := d.WriteBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	files := d.files(t, b.Dir)
	if len(files) != 2 {
		t.Fatalf("files %v, want 2", files)
	}
	want := [][][]features.Value{{rows[0], rows[2]}, {rows[1]}}

	tsUTC := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	wantFields := []arrow.Field{
		{Name: "txn_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "user_id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "ts", Type: tsUTC, Nullable: true},
		{Name: "flagged", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "items", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "_event_time", Type: tsUTC},
		{Name: "_topic", Type: arrow.BinaryTypes.String},
		{Name: "_partition", Type: arrow.PrimitiveTypes.Int32},
		{Name: "_offset", Type: arrow.PrimitiveTypes.Int64},
	}
	for i, f := range files {
		rdr, err := file.OpenParquetFile(filepath.Join(d.root, b.Dir, f), false)
		if err != nil {
			t.Fatal(err)
		}
		defer rdr.Close()

		md := rdr.MetaData()
		for _, kv := range [][2]string{
			{"quiver.stream", "transactions/3"}, {"quiver.first_offset", "100"}, {"quiver.last_offset", "102"},
		} {
			if v := md.KeyValueMetadata().FindValue(kv[0]); v == nil || *v != kv[1] {
				t.Errorf("%s: metadata %s = %v, want %q", f, kv[0], v, kv[1])
			}
		}
		for g := range md.NumRowGroups() {
			rg := md.RowGroup(g)
			for c := range rg.NumColumns() {
				cc, err := rg.ColumnChunk(c)
				if err != nil {
					t.Fatal(err)
				}
				if cc.Compression() != compress.Codecs.Zstd {
					t.Errorf("%s: column %d compressed with %v, want zstd", f, c, cc.Compression())
				}
			}
		}

		fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		fields := tbl.Schema().Fields()
		if len(fields) != len(wantFields) {
			t.Fatalf("%s: Arrow schema %v, want %v", f, tbl.Schema(), wantFields)
		}
		for j, fld := range fields {
			w := wantFields[j]
			if fld.Name != w.Name || !arrow.TypeEqual(fld.Type, w.Type) || fld.Nullable != w.Nullable {
				t.Errorf("%s: field %d is %s %s nullable=%v, want %s %s nullable=%v",
					f, j, fld.Name, fld.Type, fld.Nullable, w.Name, w.Type, w.Nullable)
			}
		}
		got, err := arrowRows(tbl)
		if err != nil {
			t.Fatal(err)
		}
		if !equalRows(got, want[i]) {
			t.Errorf("%s: Arrow read\n%v\nwant\n%v", f, got, want[i])
		}
	}
}

// arrowRows converts a table of the types a log uses to rows; an int32
// column reads as ints.
func arrowRows(tbl arrow.Table) ([][]features.Value, error) {
	rows := make([][]features.Value, tbl.NumRows())
	for i := range rows {
		rows[i] = make([]features.Value, tbl.NumCols())
	}
	for c := range int(tbl.NumCols()) {
		r := 0
		for _, chunk := range tbl.Column(c).Data().Chunks() {
			for k := range chunk.Len() {
				v := features.Null
				if !chunk.IsNull(k) {
					switch a := chunk.(type) {
					case *array.String:
						v = features.String(a.Value(k))
					case *array.Int64:
						v = features.Int(a.Value(k))
					case *array.Int32:
						v = features.Int(int64(a.Value(k)))
					case *array.Float64:
						v = features.Float(a.Value(k))
					case *array.Boolean:
						v = features.Bool(a.Value(k))
					case *array.Timestamp:
						v = features.Timestamp(int64(a.Value(k)))
					default:
						return nil, fmt.Errorf("column %d: unexpected Arrow array %T", c, chunk)
					}
				}
				rows[r][c] = v
				r++
			}
		}
	}
	return rows, nil
}

// TestArrowReadsGroups writes row groups encoded at once, out of order, and
// committed in order, and reads the file back with Arrow: the groups are in
// commit order, each with its own rows.
func TestArrowReadsGroups(t *testing.T) {
	cols := []offline.Column{{Name: "row", Type: features.TypeInt}, {Name: "label", Type: features.TypeString}}
	var buf bytes.Buffer
	w, err := offline.NewWriter(&buf, cols, nil)
	if err != nil {
		t.Fatal(err)
	}
	const groups, size = 4, 1000
	gs := make([]*offline.Group, groups)
	var wg sync.WaitGroup
	for g := groups - 1; g >= 0; g-- { // started last first
		gs[g] = w.Group()
		wg.Go(func() {
			rows := make([][]features.Value, size)
			for i := range rows {
				n := g*size + i
				rows[i] = []features.Value{features.Int(int64(n)), features.String(fmt.Sprint("row ", n))}
			}
			if err := gs[g].Write(rows); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, g := range gs {
		if err := g.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	tbl, n := arrowTable(t, buf.Bytes())
	defer tbl.Release()
	if n != groups {
		t.Errorf("%d row groups, want %d", n, groups)
	}
	rows, err := arrowRows(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != groups*size {
		t.Fatalf("%d rows, want %d", len(rows), groups*size)
	}
	for n, r := range rows {
		if r[0].Int() != int64(n) || r[1].Str() != fmt.Sprint("row ", n) {
			t.Fatalf("row %d reads %v", n, r)
		}
	}
}

// TestArrowKeepsForeignTypes writes a file of the types other writers use
// (pandas' tz-naive nanosecond timestamps, DuckDB's INT32, dates, unsigned
// and small ints, float32, binary, required columns) with Arrow, reads it
// with ReadFile and writes it back with Writer, as a dataset's spine
// columns are: Arrow reads the copy with the original's types and values.
func TestArrowKeepsForeignTypes(t *testing.T) {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "ts_ns", Type: &arrow.TimestampType{Unit: arrow.Nanosecond}, Nullable: true},
		{Name: "ts_us", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
		{Name: "small", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "label", Type: arrow.PrimitiveTypes.Int32},
		{Name: "unsigned", Type: arrow.PrimitiveTypes.Uint32, Nullable: true},
		{Name: "ratio", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "blob", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "flag", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	ms := int64(1_767_225_600_123) // 2026-01-01T00:00:00.123Z
	// Times with digits below the millisecond, after and before 1970.
	b.Field(0).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{arrow.Timestamp(ms*1e6 + 456_789), 0, arrow.Timestamp(-ms*1e6 - 1)}, []bool{true, false, true})
	b.Field(1).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{arrow.Timestamp(ms*1e3 + 456), arrow.Timestamp(-1), 0}, []bool{true, true, false})
	b.Field(2).(*array.Date32Builder).AppendValues([]arrow.Date32{20454, -1, 0}, []bool{true, true, false})
	b.Field(3).(*array.Int8Builder).AppendValues([]int8{-128, 127, 0}, []bool{true, true, false})
	b.Field(4).(*array.Int32Builder).AppendValues([]int32{1, 0, -7}, nil)
	b.Field(5).(*array.Uint32Builder).AppendValues([]uint32{1<<32 - 1, 0, 5}, []bool{true, true, false})
	b.Field(6).(*array.Float32Builder).AppendValues([]float32{0.1, -3.5, 0}, []bool{true, true, false})
	b.Field(7).(*array.StringBuilder).AppendValues([]string{"a", "", ""}, []bool{true, true, false})
	b.Field(8).(*array.BinaryBuilder).AppendValues([][]byte{{0, 0xff}, {}, nil}, []bool{true, true, false})
	b.Field(9).(*array.BooleanBuilder).AppendValues([]bool{true, false, true}, nil)
	b.Field(10).(*array.Int64Builder).AppendValues([]int64{1 << 62, -1, 0}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	in := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer in.Release()

	roundTrip(t, in, parquet.NewWriterProperties(parquet.WithVersion(parquet.V2_6)))
}

// roundTrip writes in with Arrow, reads the file with ReadFile and writes
// what it read with Writer, and checks that Arrow reads the copy with in's
// types and values. It returns what ReadFile read.
func roundTrip(t *testing.T, in arrow.Table, props *parquet.WriterProperties) ([]offline.Column, [][]features.Value) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spine.parquet")
	var buf bytes.Buffer
	if err := pqarrow.WriteTable(in, &buf, 1024, props, pqarrow.NewArrowWriterProperties()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cols, rows, _, err := offline.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	w, err := offline.NewWriter(&buf, cols, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	out, _ := arrowTable(t, buf.Bytes())
	defer out.Release()
	for j, want := range in.Schema().Fields() {
		got := out.Schema().Field(j)
		if got.Name != want.Name || !arrow.TypeEqual(got.Type, want.Type) || got.Nullable != want.Nullable {
			t.Errorf("column %d is %s %s (nullable %v), want %s %s (nullable %v)", j, got.Name, got.Type, got.Nullable, want.Name, want.Type, want.Nullable)
			continue
		}
		if !array.ChunkedEqual(out.Column(j).Data(), in.Column(j).Data()) {
			t.Errorf("column %s reads %v, want %v", want.Name, out.Column(j).Data(), in.Column(j).Data())
		}
	}
	return cols, rows
}

// arrowTable reads a Parquet file's bytes with Arrow, inferring the Arrow
// types from the Parquet ones, and returns the table and its row groups.
func arrowTable(t *testing.T, data []byte) (arrow.Table, int) {
	t.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tbl, rdr.NumRowGroups()
}

// TestArrowKeepsDecimalsAndUUIDs writes DECIMAL columns (as Arrow stores
// them, in fixed-length byte arrays, and as DuckDB does, in INT32 and
// INT64), UUIDs and UINT64 with Arrow, reads them with ReadFile and writes
// them back with Writer: decimals read as ints when they have no decimals
// and fit, as floats when they have at most 15 digits, and as their exact
// text otherwise; UUIDs read as their text; and Arrow reads the copy with
// the original's types and values.
func TestArrowKeepsDecimalsAndUUIDs(t *testing.T) {
	for _, asInteger := range []bool{false, true} {
		t.Run(fmt.Sprint("integers=", asInteger), func(t *testing.T) {
			mem := memory.DefaultAllocator
			schema := arrow.NewSchema([]arrow.Field{
				{Name: "small", Type: &arrow.Decimal128Type{Precision: 3, Scale: 2}, Nullable: true},
				{Name: "amount", Type: &arrow.Decimal128Type{Precision: 15, Scale: 2}, Nullable: true},
				{Name: "wide", Type: &arrow.Decimal128Type{Precision: 38, Scale: 18}, Nullable: true},
				{Name: "whole", Type: &arrow.Decimal128Type{Precision: 18, Scale: 0}},
				{Name: "id", Type: extensions.NewUUIDType(), Nullable: true},
				{Name: "count", Type: arrow.PrimitiveTypes.Uint64, Nullable: true},
			}, nil)
			decimals := func(prec, scale int32, texts ...string) []decimal128.Num {
				var out []decimal128.Num
				for _, s := range texts {
					n, err := decimal128.FromString(s, prec, scale)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, n)
				}
				return out
			}
			b := array.NewRecordBuilder(mem, schema)
			defer b.Release()
			b.Field(0).(*array.Decimal128Builder).AppendValues(decimals(3, 2, "1.5", "-0.05", "0"), []bool{true, true, false})
			b.Field(1).(*array.Decimal128Builder).AppendValues(decimals(15, 2, "9999999999999.99", "-0.01", "0.1"), nil)
			b.Field(2).(*array.Decimal128Builder).AppendValues(decimals(38, 18, "12345678901234567890.123456789012345678", "-0.000000000000000001", "0"), []bool{true, true, false})
			b.Field(3).(*array.Decimal128Builder).AppendValues(decimals(18, 0, "-999999999999999999", "7", "0"), nil)
			id := uuid.UUID{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00}
			b.Field(4).(*extensions.UUIDBuilder).AppendValues([]uuid.UUID{id, {}, {}}, []bool{true, true, false})
			b.Field(5).(*array.Uint64Builder).AppendValues([]uint64{math.MaxInt64, 0, 0}, []bool{true, true, false})
			rec := b.NewRecordBatch()
			defer rec.Release()
			in := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
			defer in.Release()

			cols, rows := roundTrip(t, in, parquet.NewWriterProperties(parquet.WithVersion(parquet.V2_6), parquet.WithStoreDecimalAsInteger(asInteger)))
			want := [][]features.Value{
				{features.Float(1.5), features.Float(9999999999999.99), features.String("12345678901234567890.123456789012345678"),
					features.Int(-999999999999999999), features.String("123e4567-e89b-12d3-a456-426614174000"), features.Int(math.MaxInt64)},
				{features.Float(-0.05), features.Float(-0.01), features.String("-0.000000000000000001"),
					features.Int(7), features.String("00000000-0000-0000-0000-000000000000"), features.Int(0)},
				{features.Null, features.Float(0.1), features.Null, features.Int(0), features.Null, features.Null},
			}
			for r := range want {
				for j := range want[r] {
					if rows[r][j] != want[r][j] {
						t.Errorf("row %d, column %s reads %v, want %v", r, cols[j].Name, rows[r][j], want[r][j])
					}
				}
			}
		})
	}
}

// TestUint64AboveIntRange checks that a UINT64 value no int can hold
// refuses the file, rather than reading as a negative number, naming its
// row (in the second of two row groups).
func TestUint64AboveIntRange(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "count", Type: arrow.PrimitiveTypes.Uint64, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Uint64Builder).AppendValues([]uint64{5, math.MaxInt64 + 1}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	if err := pqarrow.WriteTable(array.NewTableFromRecords(schema, []arrow.RecordBatch{rec}), &buf, 1, nil, pqarrow.NewArrowWriterProperties()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "spine.parquet")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, rows, _, err := offline.ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), "column count: row 2: an unsigned value, 9223372036854775808, is above") {
		t.Fatalf("ReadFile: %v, rows %v; want an error naming the column, the row and the value", err, rows)
	}
}

// TestArrowKeepsNullColumns: a column of Arrow's null type (pandas writes
// one for a column of None, a spine's labels not known yet) reads as
// nulls, and is written back of the same type.
func TestArrowKeepsNullColumns(t *testing.T) {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "label", Type: arrow.Null, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3}, nil)
	b.Field(1).(*array.NullBuilder).AppendNulls(3)
	rec := b.NewRecordBatch()
	defer rec.Release()
	in := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer in.Release()

	_, rows := roundTrip(t, in, nil)
	for i, r := range rows {
		if r[0].Int() != int64(i+1) || !r[1].IsNull() {
			t.Errorf("row %d reads %v, want %d and null", i, r, i+1)
		}
	}
}
