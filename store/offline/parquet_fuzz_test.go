package offline

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"

	"github.com/quiver-ml/quiver/features"
)

// fuzzSeeds are Parquet files to start from: a log file with nulls and a
// dictionary-encoded string column, and another tool's file with numbers
// and strings dictionary-encoded over row groups of several pages, and
// decimals, UUIDs and unsigned ints.
func fuzzSeeds(t testing.TB) [][]byte {
	cols := []Column{{Name: "user_id", Type: features.TypeString}, {Name: "amount", Type: features.TypeFloat},
		{Name: "flag", Type: features.TypeBool}, {Name: ColEventTime, Type: features.TypeTimestamp},
		{Name: ColPartition, Type: features.TypeInt}, {Name: ColOffset, Type: features.TypeInt}}
	b := Batch{Columns: cols, TimeColumn: 3}
	for i := range 40 {
		b.Rows = append(b.Rows, []features.Value{features.String([]string{"a", "b", "c"}[i%3]), features.Float(float64(i) / 4),
			features.Bool(i%2 == 0), features.Timestamp(int64(i) * 1000), features.Int(1), features.Int(int64(i))})
		if i%5 == 0 {
			b.Rows[i][0], b.Rows[i][1] = features.Null, features.Null
		}
	}
	idx := make([]int, len(b.Rows))
	for i := range idx {
		idx[i] = i
	}
	var log bytes.Buffer
	if err := writeRows(&log, []parquet.WriterOption{newSchema(cols), parquet.Compression(logCodec)}, &b, idx, &scratch{}); err != nil {
		t.Fatal(err)
	}

	type row struct {
		N    *int64           `parquet:"n,optional,dict"`
		S    *string          `parquet:"s,optional,dict"`
		Day  int32            `parquet:"day,date"`
		Cost float32          `parquet:"cost,dict"`
		Ns   int64            `parquet:"ns,timestamp(nanosecond:local)"`
		U32  uint32           `parquet:"u32"`
		Old  deprecated.Int96 `parquet:"old"`
		D32  int32            `parquet:"d32,decimal(2:9)"`
		D64  int64            `parquet:"d64,decimal(4:18)"`
		Big  []byte           `parquet:"big,decimal(20:40)"`
		ID   [16]byte         `parquet:"id,uuid"`
		U64  uint64           `parquet:"u64"`
	}
	var foreign bytes.Buffer
	w := parquet.NewGenericWriter[row](&foreign, parquet.PageBufferSize(64))
	for g := range 3 {
		var rows []row
		for i := range 30 {
			n, s := int64(i%4), []string{"x", "yy", "zzz"}[(i+g)%3]
			r := row{Day: int32(i), Cost: float32(i % 6), Ns: seedNs(i), U32: uint32(1<<32 - 1 - i),
				Old: deprecated.Int96{uint32(i) * 1_000_003, uint32(i), 2440588 + uint32(i)},
				D32: int32(i*37 - 500), D64: int64(i)*1e15 - 7, Big: []byte{byte(i%2) * 0xff, byte(0x7f + i%2), 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i)},
				ID: [16]byte{byte(i), 0xff}, U64: uint64(i) << 58}
			if i%7 != 0 {
				r.N, r.S = &n, &s
			}
			rows = append(rows, r)
		}
		if _, err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil { // a row group each
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return [][]byte{log.Bytes(), foreign.Bytes()}
}

// seedNs is the ns column of fuzzSeeds' second file at row i of a row
// group: times before and after 1970, with digits below the millisecond.
func seedNs(i int) int64 { return int64(i-15)*1e9 + int64(i)*1_234_567 }

// FuzzReadParquet reads arbitrary bytes as a Parquet file, as a spine from
// another tool may be: it fails with an error or gives columns of the same
// length with values of their types, never panics. What it reads, a Writer
// writes back with the same types (Column.Stored), and that reads the same.
func FuzzReadParquet(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cols, data, _, err := readParquet(bytes.NewReader(b), int64(len(b)), nil)
		if err != nil {
			return
		}
		for i, c := range data {
			if c.Len() != data[0].Len() {
				t.Fatalf("column %s has %d rows, column %s %d", cols[i].Name, c.Len(), cols[0].Name, data[0].Len())
			}
			for r := range c.Len() {
				if v := c.At(r); !v.IsNull() && v.Type() != cols[i].Type || v.Nano() >= 1e6 {
					t.Fatalf("column %s is %s; row %d has %v (%d ns past its ms)", cols[i].Name, cols[i].Type, r, v, v.Nano())
				}
			}
		}
		if ValidateColumns(cols) != nil {
			return // names a Writer refuses (empty, repeated)
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, cols, nil)
		if err != nil {
			t.Fatal(err)
		}
		rows := rowsOf(data)
		if err := w.Write(rows); err != nil {
			if strings.Contains(err.Error(), "null in a required column") {
				return // a file's own nulls where its schema says there are none
			}
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		cols2, data2, _, err := readParquet(bytes.NewReader(out.Bytes()), int64(out.Len()), nil)
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		if !slices.Equal(cols2, cols) {
			t.Fatalf("columns read back %v, want %v", cols2, cols)
		}
		if got := rowsOf(data2); fmt.Sprint(got) != fmt.Sprint(rows) {
			t.Fatalf("rows read back\n%v\nwant\n%v", got, rows)
		}
	})
}

// TestReadParquetSeeds checks that the fuzz seeds read back as written.
func TestReadParquetSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	_, data, _, err := readParquet(bytes.NewReader(seeds[0]), int64(len(seeds[0])), nil)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 40 {
		user, amount := data[0].At(r), data[1].At(r)
		if r%5 == 0 {
			if !user.IsNull() || !amount.IsNull() {
				t.Fatalf("log row %d: %v, %v; want nulls", r, user, amount)
			}
			continue
		}
		if user.Str() != []string{"a", "b", "c"}[r%3] || amount.Float() != float64(r)/4 {
			t.Fatalf("log row %d: %v, %v", r, user, amount)
		}
	}

	cols, data, _, err := readParquet(bytes.NewReader(seeds[1]), int64(len(seeds[1])), []string{"s", "n", "cost"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 3 || cols[0].Name != "n" || cols[1].Name != "s" || cols[2].Name != "cost" {
		t.Fatalf("columns %v, want n, s and cost", cols)
	}
	if data[0].Len() != 90 {
		t.Fatalf("%d rows, want 90", data[0].Len())
	}
	for r := range 90 {
		g, i := r/30, r%30
		n, s, cost := data[0].At(r), data[1].At(r), data[2].At(r)
		if cost.Float() != float64(i%6) {
			t.Fatalf("row %d: cost %v, want %d", r, cost, i%6)
		}
		if i%7 == 0 {
			if !n.IsNull() || !s.IsNull() {
				t.Fatalf("row %d: %v, %v; want nulls", r, n, s)
			}
			continue
		}
		if n.Int() != int64(i%4) || s.Str() != []string{"x", "yy", "zzz"}[(i+g)%3] {
			t.Fatalf("row %d: %v, %v; want %d, %s", r, n, s, i%4, []string{"x", "yy", "zzz"}[(i+g)%3])
		}
	}
	// The strings are shared: each row group's dictionary once.
	if len(data[1].Strings) > 9 {
		t.Errorf("%d strings for 3 row groups of 3 values each: not shared", len(data[1].Strings))
	}

	// Times keep their digits below the millisecond.
	_, data, _, err = readParquet(bytes.NewReader(seeds[1]), int64(len(seeds[1])), []string{"ns", "old"})
	if err != nil {
		t.Fatal(err)
	}
	for r := range 90 {
		i := r % 30
		ns, old := data[0].At(r), data[1].At(r)
		if got := ns.Time(); !got.Equal(time.Unix(0, seedNs(i))) || ns.Int() != got.UnixMilli() {
			t.Fatalf("row %d: ns %v (%d ms and %d ns), want %v", r, ns, ns.Int(), ns.Nano(), time.Unix(0, seedNs(i)).UTC())
		}
		want := time.Unix(int64(i)*86400, int64(i)<<32+int64(i)*1_000_003)
		if got := old.Time(); !got.Equal(want) || old.Int() != got.UnixMilli() {
			t.Fatalf("row %d: INT96 %v (%d ms and %d ns), want %v", r, old, old.Int(), old.Nano(), want.UTC())
		}
	}
}
