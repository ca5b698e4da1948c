package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/offline"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29, "1GB": 1e9, "4096": 4096, "64 KiB": 64 << 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1GiB", "12abc", "1 GiB of RAM", "99999999999GiB", "GiB"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{"1700000000000": 1_700_000_000_000, "2023-11-14T22:13:20Z": 1_700_000_000_000, "2023-11-14T23:13:20.5+01:00": 1_700_000_000_500, "0": 0} {
		if got, err := parseTime(in); err != nil || got.UnixMilli() != want {
			t.Errorf("parseTime(%q) = %v, %v; want %d ms", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "1700000000000.5", "2023-11-14", "99999999999999999"} {
		if got, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

// TestReplayWindow: a replay whose --to is not after its --from is refused
// before it reads anything.
func TestReplayWindow(t *testing.T) {
	err := run([]string{"replay", "--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", t.TempDir(),
		"--view", "user_txn@1", "--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z"})
	if err == nil || !strings.Contains(err.Error(), "--to 2026-11-01T00:00:00Z is not after --from 2026-11-02T00:00:00Z") {
		t.Fatalf("got %v, want an error naming --to and --from", err)
	}
}

// TestStrayArgument: `--inclusive false` would build the inclusive training
// set and drop every flag after it; it is refused, naming the word.
func TestStrayArgument(t *testing.T) {
	err := run([]string{"dataset", "--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", t.TempDir(),
		"--spine", "spine.csv", "--timestamp-column", "ts", "--feature-service", "fraud_v1", "--inclusive", "false", "--out", "x.parquet"})
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "false"`) {
		t.Fatalf("got %v, want an error naming the stray word", err)
	}
}

// TestMissingTempDir: a --temp-dir that is not there, or is not a
// directory, is refused before anything is read, naming the flag.
func TestMissingTempDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{filepath.Join(t.TempDir(), "missing"): "--temp-dir: stat ", file: "--temp-dir " + file + " is not a directory"} {
		for _, args := range [][]string{
			{"dataset", "--spine", "spine.csv", "--timestamp-column", "ts", "--feature-service", "fraud_v1", "--out", "x.parquet"},
			{"replay", "--view", "user_txn@1"},
		} {
			err := run(append(args, "--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", t.TempDir(), "--temp-dir", dir))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s --temp-dir %s: %v, want %q", args[0], dir, err, want)
			}
		}
	}
}

// TestOneShardMerges runs a dataset as the Helm chart does with one shard,
// into a directory not made yet, and merges it.
func TestOneShardMerges(t *testing.T) {
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,ts\nu1,2026-11-20T00:00:00Z\nu2,2026-11-20T01:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	off, err := offline.NewDir(filepath.Join(dir, "data", "offline"))
	if err != nil {
		t.Fatal(err)
	}
	ingesttest.WriteLog(t, off, defs.Source("transactions"), 0, `{"txn_id": "t1", "user_id": "u1", "merchant_id": "m1", "amount": 5, "country": "FR", "ts": "2026-11-19T23:30:00Z"}`)
	shard := filepath.Join(dir, "datasets", "train", "shard-0.parquet")
	if err := run([]string{"dataset", "--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", filepath.Join(dir, "data"),
		"--spine", spine, "--timestamp-column", "ts", "--features", "user_txn@1:txn_count_1h", "--out=" + shard, "--shard=0/1"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "train.parquet")
	if err := run([]string{"merge", "--out", out, shard}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{out, out + ".profile.json"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}

// TestCompactChangedDefinition: compact refuses definitions that changed a
// registered view version, as dataset and replay do.
func TestCompactChangedDefinition(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	src, err := os.ReadFile("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(dir, "definitions.yaml")
	if err := os.WriteFile(defs, src, 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := features.Load(defs)
	if err != nil {
		t.Fatal(err)
	}
	off, err := offline.NewDir(filepath.Join(data, "offline")) // --data-dir's default offline store
	if err != nil {
		t.Fatal(err)
	}
	if err := features.NewRegistry(off).Register(context.Background(), loaded); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "{name: txn_count_1h,   agg: count, window: 1h}", "{name: txn_count_1h,   agg: count, window: 2h}", 1)
	if changed == string(src) {
		t.Fatal("the fraud example's txn_count_1h moved: update the test")
	}
	if err := os.WriteFile(defs, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run([]string{"compact", "--definitions", defs, "--data-dir", data})
	if !errors.Is(err, features.ErrVersionNotBumped) {
		t.Fatalf("compact with a changed user_txn@1: %v, want ErrVersionNotBumped", err)
	}
}

// TestProgressMetrics scrapes --metrics-addr over HTTP while a run's steps
// go by.
func TestProgressMetrics(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	log := slog.New(slog.DiscardHandler)
	p, stop, err := startProgress(addr, log, func() { t.Error("metrics server failed") })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	p.Step("reading events/transactions", -1) // total unknown
	p.Add(3)
	p.Add(4)
	p.Step("computing features", 10)
	p.Add(2)
	want := `
# HELP quiver_backfill_step_items_total Items a step of the run has done: events read, spine rows computed (once for each entity the features are of: a row of a user and a merchant counts twice), logs compacted, events replayed.
# TYPE quiver_backfill_step_items_total counter
quiver_backfill_step_items_total{step="computing features"} 2
quiver_backfill_step_items_total{step="reading events/transactions"} 7
# HELP quiver_backfill_step_target_items Items a step of the run will do, where known before it ends.
# TYPE quiver_backfill_step_target_items gauge
quiver_backfill_step_target_items{step="computing features"} 10
`
	if err := testutil.ScrapeAndCompare("http://"+addr+"/metrics", strings.NewReader(want),
		"quiver_backfill_step_items_total", "quiver_backfill_step_target_items"); err != nil {
		t.Error(err)
	}
	if _, _, err := startProgress(addr, log, nil); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("a second run on %s: %v, want an --metrics-addr error", addr, err)
	}
}
