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
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/offline"
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

	out, spine, valid := buildDataset(t, defs, txns, dataDir)
	checkDataset(t, defs, out, spine, valid)
}

type spineRow struct {
	user, merchant string
	at             int64
	amount         float64
}

// buildDataset runs the backfill binary for fraud_v1 over a CSV spine of
// 300 of the stream's valid transactions with a merchant, shuffled, with a
// label; it returns the output, the spine and the valid events. extra are
// more flags.
func buildDataset(t *testing.T, defs *features.Definitions, txns []ingesttest.Txn, dataDir string, extra ...string) (string, []spineRow, []features.Event) {
	src := defs.Source("transactions")
	var valid, spineEvents []features.Event
	for _, x := range txns {
		var ev features.Event
		if x.Valid && src.DecodeJSON([]byte(x.Value), &ev) == nil {
			valid = append(valid, ev)
			if !ev.Fields[src.Field("merchant_id")].IsNull() {
				spineEvents = append(spineEvents, ev)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var spine []spineRow
	for _, i := range rng.Perm(len(spineEvents))[:300] {
		ev := spineEvents[i]
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
	cmd := exec.Command(filepath.Join(bin, "backfill"), append([]string{"dataset", "--definitions", definitions, "--data-dir", dataDir,
		"--spine", spinePath, "--timestamp-column", "ts", "--feature-service", "fraud_v1", "--out", out}, extra...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("backfill dataset: %v\n%s", err, msg)
	} else if !strings.Contains(string(msg), "rows=300") {
		t.Errorf("no summary with the row count in the output:\n%s", msg)
	}
	return out, spine, valid
}

// checkDataset reads a fraud_v1 dataset with Apache Arrow and checks its
// columns, order and values against the engine over the valid events.
func checkDataset(t *testing.T, defs *features.Definitions, out string, spine []spineRow, valid []features.Event) {
	src := defs.Source("transactions")
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
		// Before the user's first event, st is empty: a count of 0, a
		// null average (DESIGN §4).
		if err := eng.Evaluate(st, row.at, vals); err != nil {
			t.Fatal(err)
		}
		if counts.IsNull(r) || counts.Value(r) != vals[0].Int() {
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

// TestCompactBesideIngest: `backfill compact` runs again and again while
// ingest writes the event log (in many small batches) and once more after a
// restart of ingest; the log still holds every valid event exactly once,
// and a dataset built over it has the engine's values.
func TestCompactBesideIngest(t *testing.T) {
	brokers := startBroker(t)
	dataDir := t.TempDir()
	in := startIngest(t, brokers, dataDir, "--max-batch", "50")
	txns := ingesttest.Stream(6, 3000)
	half := len(txns) / 2

	ctx, stopCompacting := context.WithCancel(context.Background())
	compacted := make(chan int)
	go func() {
		runs := 0
		for ctx.Err() == nil {
			cmd := exec.Command(filepath.Join(bin, "backfill"), "compact", "--definitions", definitions, "--data-dir", dataDir,
				"--target-size", "256KiB", "--log-format", "json")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("backfill compact: %v\n%s", err, out)
				break
			}
			runs++
		}
		compacted <- runs
	}()
	for i := 0; i < half; i += 100 {
		kcatProduce(t, brokers, txns[i:min(i+100, half)])
	}
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	// A restart: the high-water marks must survive compaction, or the
	// restarted ingest would log events twice.
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	startIngest(t, brokers, dataDir, "--max-batch", "50")
	for i := half; i < len(txns); i += 100 {
		kcatProduce(t, brokers, txns[i:min(i+100, len(txns))])
	}
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	stopCompacting()
	runs := <-compacted
	t.Logf("%d compactions beside ingest", runs)

	defs := loadDefs(t)
	src := defs.Source("transactions")
	valid := map[string]bool{}
	for _, x := range txns {
		var ev features.Event
		if x.Valid && src.DecodeJSON([]byte(x.Value), &ev) == nil {
			valid[ev.Fields[src.Field("txn_id")].Str()] = true
		}
	}
	// The directory as DuckDB or pyarrow read it, every Parquet file but
	// hidden ones: compaction removed the files it replaced.
	seen := map[string]bool{}
	files, err := bareLog(filepath.Join(dataDir, "offline"))
	if err != nil {
		t.Fatal(err)
	}
	merged := 0
	for _, f := range files {
		if _, _, meta, err := offline.ReadFile(f); err == nil && meta[offline.MetaReplaces] != "" {
			merged++
		}
	}
	if merged == 0 {
		t.Fatalf("none of the %d files of the log is a compacted one", len(files))
	}
	t.Logf("the log is %d files, %d of them compacted", len(files), merged)
	for _, f := range files {
		tbl := readArrow(t, f)
		ids := column[*array.String](t, tbl, 0)
		for i := range ids.Len() {
			if id := ids.Value(i); seen[id] || !valid[id] {
				t.Fatalf("%s: transaction %s repeated or not valid", f, id)
			} else {
				seen[id] = true
			}
		}
		tbl.Release()
	}
	if len(seen) != len(valid) {
		t.Fatalf("the event log holds %d transactions, want %d", len(seen), len(valid))
	}
	out, spine, events := buildDataset(t, defs, txns, dataDir)
	checkDataset(t, defs, out, spine, events)
}

// bareLog lists the transactions event log's Parquet files as a reader
// of the directory does: every one but hidden ones.
func bareLog(root string) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(root, "events", "transactions", "date=*", "*.parquet"))
	var files []string
	for _, f := range all {
		if !strings.HasPrefix(filepath.Base(f), ".") {
			files = append(files, f)
		}
	}
	return files, err
}
