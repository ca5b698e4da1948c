package e2e_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// TestBackfillDataset: kcat → ingest writes the offline event log; the
// backfill binary builds a training set for the fraud_v1 service from a CSV
// spine of labelled transactions in random order. Apache Arrow's reader (not
// the writer's library) finds the spine's columns first, then the service's
// features and its on-demand feature, typed, in the spine's row order, and
// the values are the engine's over the events before each spine time.
func TestBackfillDataset(t *testing.T) {
	brokers := startBroker(t)
	txns := ingesttest.Stream(5, 2000)
	kcatProduce(t, brokers, txns)
	dataDir := t.TempDir()
	startIngest(t, brokers, dataDir)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	defs := loadDefs(t)
	src := defs.Source("transactions")

	// The spine: 300 valid transactions, shuffled, with a label.
	var valid []features.Event
	for _, x := range txns {
		var ev features.Event
		if x.Valid && src.DecodeJSON([]byte(x.Value), &ev) == nil {
			valid = append(valid, ev)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type spineRow struct {
		user, merchant string
		at             int64
		amount         float64
	}
	var spine []spineRow
	for _, i := range rng.Perm(len(valid))[:300] {
		ev := valid[i]
		spine = append(spine, spineRow{ev.Fields[src.Field("user_id")].Str(), ev.Fields[src.Field("merchant_id")].Str(), ev.Time, ev.Fields[src.Field("amount")].Float()})
	}
	spinePath := filepath.Join(t.TempDir(), "spine.csv")
	f, err := os.Create(spinePath)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"user_id", "merchant_id", "ts", "amount", "is_fraud"})
	for i, r := range spine {
		w.Write([]string{r.user, r.merchant, time.UnixMilli(r.at).UTC().Format(time.RFC3339Nano), fmt.Sprint(r.amount), fmt.Sprint(i % 2)})
	}
	w.Flush()
	f.Close()

	out := filepath.Join(t.TempDir(), "train.parquet")
	cmd := exec.Command(filepath.Join(bin, "backfill"), "dataset", "--definitions", definitions, "--data-dir", dataDir,
		"--spine", spinePath, "--timestamp-column", "ts", "--feature-service", "fraud_v1", "--out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("backfill dataset: %v\n%s", err, msg)
	} else if !strings.Contains(string(msg), "rows=300") {
		t.Errorf("no summary with the row count in the output:\n%s", msg)
	}

	tbl := readArrow(t, out)
	defer tbl.Release()
	i64, f64, str := arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Float64, arrow.BinaryTypes.String
	want := []arrow.Field{
		{Name: "user_id", Type: str}, {Name: "merchant_id", Type: str}, {Name: "ts", Type: str}, {Name: "amount", Type: f64}, {Name: "is_fraud", Type: i64},
		{Name: "user_txn__txn_count_1h", Type: i64}, {Name: "user_txn__amount_sum_1h", Type: f64}, {Name: "user_txn__amount_avg_24h", Type: f64},
		{Name: "user_txn__amount_max_24h", Type: f64}, {Name: "user_txn__amount_std_7d", Type: f64}, {Name: "user_txn__merchants_24h", Type: i64},
		{Name: "merchant_txn__txn_count_1h", Type: i64}, {Name: "merchant_txn__amount_avg_24h", Type: f64}, {Name: "merchant_txn__users_24h", Type: i64},
		{Name: "amount_vs_avg", Type: f64},
	}
	got := tbl.Schema().Fields()
	if len(got) != len(want) {
		t.Fatalf("columns %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !arrow.TypeEqual(got[i].Type, want[i].Type) {
			t.Errorf("column %d is %s %s, want %s %s", i, got[i].Name, got[i].Type, want[i].Name, want[i].Type)
		}
	}
	if tbl.NumRows() != int64(len(spine)) {
		t.Fatalf("%d rows, want %d", tbl.NumRows(), len(spine))
	}

	// Row order and values: the engine over the events before each time.
	users := column[*array.String](t, tbl, 0)
	counts := column[*array.Int64](t, tbl, 5)
	avgs := column[*array.Float64](t, tbl, 7)
	ratio := column[*array.Float64](t, tbl, 14)
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		t.Fatal(err)
	}
	sorted := slices.Clone(valid)
	slices.SortStableFunc(sorted, func(a, b features.Event) int { return int(a.Time - b.Time) })
	vals := make([]features.Value, len(eng.View().Features))
	for r, row := range spine {
		if users.Value(r) != row.user {
			t.Fatalf("row %d has user %s, the spine's has %s: order lost", r, users.Value(r), row.user)
		}
		st := eng.NewState()
		for i := range sorted {
			if sorted[i].Time < row.at && sorted[i].Fields[src.Field("user_id")].Str() == row.user {
				eng.Apply(st, &sorted[i])
			}
		}
		if err := eng.Evaluate(st, row.at, vals); err != nil {
			t.Fatal(err)
		}
		if counts.Value(r) != vals[0].Int() {
			t.Errorf("row %d: txn_count_1h = %d, want %d", r, counts.Value(r), vals[0].Int())
		}
		switch {
		case vals[2].IsNull() != avgs.IsNull(r):
			t.Errorf("row %d: amount_avg_24h null %v, want %v", r, avgs.IsNull(r), vals[2].IsNull())
		case !vals[2].IsNull() && (avgs.Value(r) != vals[2].Float() || ratio.Value(r) != row.amount/(vals[2].Float()+1)):
			t.Errorf("row %d: amount_avg_24h %v, amount_vs_avg %v; want %v, %v", r, avgs.Value(r), ratio.Value(r), vals[2].Float(), row.amount/(vals[2].Float()+1))
		}
	}
	if _, err := os.Stat(out + ".profile.json"); err != nil {
		t.Errorf("no profile beside the dataset: %v", err)
	}
}

// readArrow reads a whole Parquet file with Apache Arrow's reader.
func readArrow(t *testing.T, path string) arrow.Table {
	rdr, err := file.OpenParquetFile(path, false)
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
	return tbl
}

// column returns a table column as one array of type A.
func column[A arrow.Array](t *testing.T, tbl arrow.Table, i int) A {
	chunks := tbl.Column(i).Data().Chunks()
	if len(chunks) != 1 {
		t.Fatalf("column %d has %d chunks", i, len(chunks))
	}
	return chunks[0].(A)
}
