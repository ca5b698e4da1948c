package e2e_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/s3test"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestKcatToServeS3 is kcat → ingest → serve with the offline store in a
// bucket of a real S3-compatible server (--offline s3://bucket/prefix, the
// credentials and endpoint in the environment): serve answers the engine's
// values; ingest, restarted half way, logs every valid event exactly once
// in the bucket; `backfill compact` merges the log there and `backfill
// dataset` builds a training set from it with the engine's values.
func TestKcatToServeS3(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	for k, v := range srv.Env() {
		t.Setenv(k, v) // for the binaries this test starts
	}
	store := "s3://" + bucket + "/quiver"

	brokers := startBroker(t)
	defs := loadDefs(t)
	txns := recentStream(2000)
	ref := ingesttest.Reference(t, defs, txns)
	half := len(txns) / 2
	kcatProduce(t, brokers, txns[:half])
	in := startIngest(t, brokers, t.TempDir(), "--offline", store, "--max-batch", "200")
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	// A restart: ingest must go on from the high-water marks in the bucket.
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	startIngest(t, brokers, t.TempDir(), "--offline", store, "--max-batch", "200")
	kcatProduce(t, brokers, txns[half:])
	base, _ := startServe(t, brokers, t.TempDir(), "--offline", store)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	waitReady(t, base)
	waitForReference(t, base, defs, ref)

	off, err := offline.NewS3Dir(context.Background(), srv.Options(bucket, "quiver"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.ReadFile(context.Background(), "_registry/user_txn/v1.json"); err != nil {
		t.Errorf("the registry record of user_txn v1 is not in the bucket: %v", err)
	}
	before := checkEventLogS3(t, off, defs, txns)
	if keys := srv.Keys(t, bucket, "quiver/events/transactions"); len(keys) != before {
		t.Errorf("%d objects under events/transactions, %d listed: want no others (temporary files)", len(keys), before)
	}

	for range 2 { // the second run removes what the first replaced (grace 1ms)
		cmd := exec.Command(filepath.Join(bin, "backfill"), "compact", "--definitions", definitions, "--data-dir", t.TempDir(),
			"--offline", store, "--target-size", "256KiB", "--grace", "1ms")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("backfill compact: %v\n%s", err, out)
		}
	}
	after := checkEventLogS3(t, off, defs, txns)
	if after >= before {
		t.Errorf("compaction left %d files of %d", after, before)
	}
	t.Logf("the event log in the bucket: %d files, %d after compaction", before, after)
	out, spine, events := buildDataset(t, defs, txns, t.TempDir(), "--offline", store)
	checkDataset(t, defs, out, spine, events)
}

// checkEventLogS3 reads the transactions event log from the store and
// checks that it holds every valid transaction exactly once; it returns how
// many files it read.
func checkEventLogS3(t *testing.T, off *offline.Dir, defs *features.Definitions, txns []ingesttest.Txn) int {
	t.Helper()
	src := defs.Source("transactions")
	valid := map[string]bool{}
	for _, x := range txns {
		var ev features.Event
		if x.Valid && src.DecodeJSON([]byte(x.Value), &ev) == nil {
			valid[ev.Fields[src.Field("txn_id")].Str()] = true
		}
	}
	files, err := off.LogFiles(context.Background(), "events/transactions")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if !strings.HasPrefix(f.Name, "events/transactions/date=") {
			t.Errorf("log file %s outside a date partition", f.Name)
		}
		cols, rows, _, err := off.ReadLogFile(context.Background(), f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if cols[0].Name != "txn_id" {
			t.Fatalf("%s: first column %s, want txn_id", f.Name, cols[0].Name)
		}
		for _, r := range rows {
			if id := r[0].Str(); seen[id] || !valid[id] {
				t.Fatalf("%s: transaction %s repeated or not valid", f.Name, id)
			} else {
				seen[id] = true
			}
		}
	}
	if len(seen) != len(valid) {
		t.Fatalf("the event log in the bucket holds %d transactions, want %d", len(seen), len(valid))
	}
	return len(files)
}
