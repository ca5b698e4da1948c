package e2e_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

var (
	str   = arrow.BinaryTypes.String
	i64   = arrow.PrimitiveTypes.Int64
	f64   = arrow.PrimitiveTypes.Float64
	tsUTC = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
)

// offlineSchemas are the columns DESIGN §6 gives the fraud example's logs,
// as Apache Arrow's reader sees them.
var offlineSchemas = map[string][]arrow.Field{
	"events/transactions": {
		{Name: "txn_id", Type: str, Nullable: true}, {Name: "user_id", Type: str, Nullable: true},
		{Name: "merchant_id", Type: str, Nullable: true}, {Name: "amount", Type: f64, Nullable: true},
		{Name: "country", Type: str, Nullable: true}, {Name: "ts", Type: tsUTC, Nullable: true},
		{Name: "_event_time", Type: tsUTC}, {Name: "_topic", Type: str},
		{Name: "_partition", Type: arrow.PrimitiveTypes.Int32}, {Name: "_offset", Type: i64},
	},
	"features/user_txn/v1": {
		{Name: "user_id", Type: str, Nullable: true}, {Name: "_event_time", Type: tsUTC},
		{Name: "txn_count_1h", Type: i64, Nullable: true}, {Name: "amount_sum_1h", Type: f64, Nullable: true},
		{Name: "amount_avg_24h", Type: f64, Nullable: true}, {Name: "amount_max_24h", Type: f64, Nullable: true},
		{Name: "amount_std_7d", Type: f64, Nullable: true}, {Name: "merchants_24h", Type: i64, Nullable: true},
		{Name: "last_country", Type: str, Nullable: true},
	},
	"features/merchant_txn/v1": {
		{Name: "merchant_id", Type: str, Nullable: true}, {Name: "_event_time", Type: tsUTC},
		{Name: "txn_count_1h", Type: i64, Nullable: true}, {Name: "amount_avg_24h", Type: f64, Nullable: true},
		{Name: "users_24h", Type: i64, Nullable: true}, {Name: "countries_7d", Type: i64, Nullable: true},
	},
}

// checkOfflineWithArrow reads every file of the offline logs with Apache
// Arrow's Parquet reader, an implementation independent of the writer's:
// each has DESIGN §6's columns and types, and the event log holds wantEvents
// rows in all.
func checkOfflineWithArrow(t *testing.T, root string, wantEvents int64) {
	t.Helper()
	for dir, want := range offlineSchemas {
		rows, files := int64(0), 0
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") || strings.HasPrefix(d.Name(), ".") {
				return err
			}
			files++
			if !strings.Contains(path, "/date=") {
				t.Errorf("%s is not in a date= partition", path)
			}
			rdr, err := file.OpenParquetFile(path, false)
			if err != nil {
				return err
			}
			defer rdr.Close()
			fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
			if err != nil {
				return err
			}
			schema, err := fr.Schema()
			if err != nil {
				return err
			}
			got := schema.Fields()
			if len(got) != len(want) {
				t.Fatalf("%s: columns %v, want %v", path, got, want)
			}
			for i := range want {
				if got[i].Name != want[i].Name || !arrow.TypeEqual(got[i].Type, want[i].Type) || got[i].Nullable != want[i].Nullable {
					t.Errorf("%s: column %d is %s %s (nullable %v), want %s %s (nullable %v)", path, i,
						got[i].Name, got[i].Type, got[i].Nullable, want[i].Name, want[i].Type, want[i].Nullable)
				}
			}
			tbl, err := fr.ReadTable(context.Background())
			if err != nil {
				return err
			}
			rows += tbl.NumRows()
			tbl.Release()
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if files == 0 {
			t.Errorf("%s: no files", dir)
		}
		if dir == "events/transactions" && rows != wantEvents {
			t.Errorf("%s: %d rows, want %d", dir, rows, wantEvents)
		}
	}
}
