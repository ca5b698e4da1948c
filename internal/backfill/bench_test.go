package backfill_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/backfill"
	"github.com/quiver-ml/quiver/store/offline"
)

// benchEvents and benchSpineRows size BenchmarkDataset; the full
// run (10M events, 1M rows) is `make bench-backfill`.
var (
	benchEvents    = envInt("QUIVER_BENCH_EVENTS", 1_000_000)
	benchSpineRows = envInt("QUIVER_BENCH_SPINE_ROWS", 100_000)
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchDir is the directory benchStore made, removed by TestMain.
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// keptStore is where benchStore keeps what it writes, to be reused by later
// runs of the same size, if QUIVER_BENCH_DIR names a directory: generating
// the full-size log takes longer than building its dataset. What is kept
// was written by the writer of its day: remove it when that changes.
func keptStore() string {
	dir := os.Getenv("QUIVER_BENCH_DIR")
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("events-%d-rows-%d", benchEvents, benchSpineRows))
}

// benchStore writes benchEvents fraudgen transactions (1,000 users, 200
// merchants, a week) to an offline event log as ingest would, in 50,000-row
// batches over 4 partitions, and a CSV spine of benchSpineRows labelled
// rows at random times of random transactions' users and merchants. It is
// built once per test binary, or once per QUIVER_BENCH_DIR (keptStore).
var benchStore = sync.OnceValues(func() (string, error) {
	kept := keptStore()
	if _, err := os.Stat(kept); kept != "" && err == nil {
		return kept, nil
	}
	dir, err := os.MkdirTemp(os.Getenv("QUIVER_BENCH_DIR"), "quiver-backfill-bench-")
	if err != nil {
		return "", err
	}
	benchDir = dir
	if err := writeBenchStore(dir); err != nil || kept == "" {
		return dir, err
	}
	if err := os.Rename(dir, kept); err != nil {
		return "", err
	}
	benchDir = ""
	return kept, nil
})

// writeBenchStore writes benchStore's event log and spine in dir.
func writeBenchStore(dir string) error {
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		return err
	}
	off, err := offline.NewDir(filepath.Join(dir, "offline"))
	if err != nil {
		return err
	}
	src := defs.Source("transactions")
	cols := offline.EventColumns(src)
	week := 7 * 24 * time.Hour
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	g, err := fraudgen.New(fraudgen.Config{Seed: 1, Users: 1000, Merchants: 200, Start: start, Rate: float64(benchEvents) / week.Seconds()})
	if err != nil {
		return err
	}
	type key struct{ user, merchant string }
	var keys []key
	batches := make([]*offline.Batch, 4)
	var ev features.Event
	for i := range benchEvents {
		e := g.Next()
		if err := src.DecodeJSON(e.JSON(), &ev); err != nil {
			return err
		}
		p := i % 4
		b := batches[p]
		if b == nil {
			b = &offline.Batch{Dir: "events/transactions", Columns: cols, TimeColumn: len(src.Schema), Stream: fmt.Sprintf("transactions/%d", p), FirstOffset: int64(i / 4)}
			batches[p] = b
		}
		b.Rows = append(b.Rows, append(append([]features.Value(nil), ev.Fields...),
			features.Timestamp(ev.Time), features.String("transactions"), features.Int(int64(p)), features.Int(int64(i/4))))
		b.LastOffset = int64(i / 4)
		if len(b.Rows) == 50_000 || i >= benchEvents-4 {
			if err := off.WriteBatch(context.Background(), *b); err != nil {
				return err
			}
			batches[p] = nil
		}
		if i%(benchEvents/1000+1) == 0 {
			keys = append(keys, key{e.UserID, e.MerchantID})
		}
	}
	f, err := os.Create(filepath.Join(dir, "spine.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"user_id", "merchant_id", "ts", "amount", "is_fraud"})
	rng := rand.New(rand.NewPCG(3, 4))
	for range benchSpineRows {
		k := keys[rng.IntN(len(keys))]
		at := start.Add(time.Duration(rng.Int64N(int64(week))))
		w.Write([]string{k.user, k.merchant, strconv.FormatInt(at.UnixMilli(), 10), strconv.Itoa(rng.IntN(500)), strconv.Itoa(rng.IntN(2))})
	}
	w.Flush()
	return f.Close()
}

// BenchmarkDataset builds the fraud_v1 training set for the benchmark spine
// from the benchmark event log; it reports spine rows and events per second.
func BenchmarkDataset(b *testing.B) {
	dir, err := benchStore()
	if err != nil {
		b.Fatal(err)
	}
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	off, err := offline.NewDir(filepath.Join(dir, "offline"))
	if err != nil {
		b.Fatal(err)
	}
	for _, limit := range []int64{1 << 30, 256 << 20} {
		b.Run(fmt.Sprintf("memory-limit=%dMiB", limit>>20), func(b *testing.B) {
			var sum backfill.Summary
			cpu := cpuTime()
			for b.Loop() {
				sum, err = backfill.Dataset(context.Background(), backfill.DatasetConfig{
					Definitions: defs, Offline: off, Spine: filepath.Join(dir, "spine.csv"), TimestampColumn: "ts",
					Service: "fraud_v1", Out: filepath.Join(b.TempDir(), "train.parquet"), MemoryLimit: limit, TempDir: b.TempDir(),
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(sum.Rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(sum.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(sum.Buckets), "buckets")
			b.ReportMetric(float64(sum.Parts), "parts")
			b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
		})
	}
	// The ceiling: only reading the log's columns that the dataset reads,
	// with parquet-go's own typed page data (no conversion), a file per
	// core at once. rows/s is the spine's rows over that time: what a
	// dataset would reach if it did nothing else.
	b.Run("ceiling=log-read", func(b *testing.B) {
		read := []string{"user_id", "merchant_id", "amount", offline.ColEventTime, offline.ColPartition, offline.ColOffset}
		var events atomic.Int64
		cpu := cpuTime()
		for b.Loop() {
			if err := readLogRaw(off, "events/transactions", read, &events); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchSpineRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(events.Load())/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	})
}

// readLogRaw reads the named columns of every file of a log directory,
// page by page, with one goroutine per core, and counts the rows.
func readLogRaw(off *offline.Dir, dir string, columns []string, rows *atomic.Int64) error {
	ctx := context.Background()
	files, err := off.LogFiles(ctx, dir)
	if err != nil {
		return err
	}
	var next atomic.Int64
	var g errgroup.Group
	for range runtime.GOMAXPROCS(0) {
		g.Go(func() error {
			for i := int(next.Add(1) - 1); i < len(files); i = int(next.Add(1) - 1) {
				data, err := off.ReadFile(ctx, files[i].Name)
				if err != nil {
					return err
				}
				pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
				if err != nil {
					return err
				}
				for _, rg := range pf.RowGroups() {
					rows.Add(rg.NumRows())
					for _, cc := range rg.ColumnChunks() {
						if !slices.Contains(columns, pf.Schema().Fields()[cc.Column()].Name()) {
							continue
						}
						if err := readPages(cc); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// readPages decodes a column chunk's pages, dictionaries included.
func readPages(cc parquet.ColumnChunk) error {
	pages := cc.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p.Data()
		parquet.Release(p)
	}
}

// cpuTime returns the CPU time the process has used, user and system: on a
// shared machine it varies less than the elapsed time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
