package e2e_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
)

// userTxnV2 is a new version of user_txn, added to the fraud definitions:
// lifetime count and sum (so a double-counted event shows), a window, and a
// filter of its own.
const userTxnV2 = `
  - name: user_txn
    version: 2
    entity: user
    source: transactions
    filter: "e.amount > 50.0"
    ttl: 720h
    features:
      - {name: txn_count,     agg: count}
      - {name: amount_sum,    agg: sum,   field: amount}
      - {name: txn_count_1h,  agg: count, window: 1h}
      - {name: last_country,  agg: last,  field: country}
`

// TestReplayHandover: user_txn@2 is defined while ingest (without it)
// runs; backfill replay bootstraps it from the event log while events keep
// arriving; ingest is restarted with the new definitions and catches the
// version up from the replay's marker; more events follow. Every user's
// user_txn@2 state in the changelog then equals the engine's over all the
// events, applied once: no gap and no double count at the handover. And
// its feature log, written by the replay, the catch-up and ingest, has a
// row for each of those events, once.
func TestReplayHandover(t *testing.T) {
	brokers := startBroker(t)
	dataDir := t.TempDir()
	txns := ingesttest.Stream(7, 3000)
	a, b, c := txns[:1000], txns[1000:2000], txns[2000:]

	in := startIngest(t, brokers, dataDir)
	kcatProduce(t, brokers, a)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)

	defs2 := withVersion2(t)

	// The replay runs while ingest goes on with part b.
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < len(b); i += 100 {
			kcatProduce(t, brokers, b[i:min(i+100, len(b))])
		}
	})
	out, err := exec.Command(filepath.Join(bin, "backfill"), "replay", "--view", "user_txn@2", "--definitions", defs2,
		"--data-dir", dataDir, "--brokers", strings.Join(brokers, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("backfill replay: %v\n%s", err, out)
	}
	t.Logf("replay: %s", strings.TrimSpace(string(out)))
	wg.Wait()
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest: %v", err)
	}

	// Ingest with the new version takes over, then part c.
	metrics := freeport.Get(t)
	again := start(t, "ingest", "--definitions", defs2, "--brokers", strings.Join(brokers, ","), "--data-dir", dataDir,
		"--metrics-addr", "127.0.0.1:"+strconv.Itoa(metrics), "--log-format", "json")
	kcatProduce(t, brokers, c)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	checkVersion2(t, brokers, defs2, filepath.Join(dataDir, "offline"), txns)
	// The line the runbook watches for, whether or not the replay left
	// anything to apply.
	if log, _ := os.ReadFile(again.log); !strings.Contains(string(log), `"msg":"view caught up from the event log","view":"user_txn@2"`) {
		t.Errorf("ingest did not log that it caught user_txn@2 up")
	}
}

// TestNewVersionRollout: user_txn@2 is added by restarting ingest with the
// new definitions, two instances at once as a rollout starts them. One
// catches the version up from the whole event log while the other waits;
// then both consume. The version's states and feature log are as if one
// instance had computed it: every event applied once, and logged once.
func TestNewVersionRollout(t *testing.T) {
	brokers := startBroker(t)
	dataDir := t.TempDir()
	txns := ingesttest.Stream(8, 8000)
	a, b := txns[:6000], txns[6000:]

	in := startIngest(t, brokers, dataDir)
	kcatProduce(t, brokers, a)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest: %v", err)
	}

	defs2 := withVersion2(t)
	offlineDir := filepath.Join(dataDir, "offline")
	var started []*proc
	for _, dir := range []string{dataDir, t.TempDir()} {
		started = append(started, start(t, "ingest", "--definitions", defs2, "--brokers", strings.Join(brokers, ","),
			"--data-dir", dir, "--offline", "file://"+offlineDir,
			"--metrics-addr", "127.0.0.1:"+strconv.Itoa(freeport.Get(t)), "--log-format", "json"))
	}
	kcatProduce(t, brokers, b)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	checkVersion2(t, brokers, defs2, offlineDir, txns)
	var caughtUp, waited int
	for _, p := range started {
		log, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		caughtUp += strings.Count(string(log), "view caught up from the event log")
		waited += strings.Count(string(log), "waiting for another instance to start")
	}
	if caughtUp != 1 || waited > 1 {
		t.Errorf("%d instances caught user_txn@2 up and %d waited; want one and at most one", caughtUp, waited)
	}
}

// TestVersionRemovedAndBack: user_txn@2 is computed, then taken out of the
// definitions (a rollback) while events go on, then defined again. Nothing
// computed it in between, so it is replayed from the whole event log when it
// comes back, rather than resume past those events: its states and feature
// log are then as if it had been computed all along.
func TestVersionRemovedAndBack(t *testing.T) {
	brokers := startBroker(t)
	dataDir := t.TempDir()
	txns := ingesttest.Stream(9, 6000)
	defs2 := withVersion2(t)
	parts := [][]ingesttest.Txn{txns[:2000], txns[2000:4000], txns[4000:]}
	for i, defs := range []string{defs2, definitions, defs2} {
		in := startIngest(t, brokers, dataDir, "--definitions", defs)
		kcatProduce(t, brokers, parts[i])
		ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
		if err := in.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("ingest: %v", err)
		}
		if log, _ := os.ReadFile(in.log); i == 1 && !strings.Contains(string(log), "view version no longer defined") {
			t.Errorf("ingest without user_txn@2 did not say it would be replayed when defined again")
		}
	}
	checkVersion2(t, brokers, defs2, filepath.Join(dataDir, "offline"), txns)
}

// withVersion2 writes the fraud definitions with userTxnV2 added, and
// returns their file.
func withVersion2(t *testing.T) string {
	defs2 := filepath.Join(t.TempDir(), "definitions.yaml")
	base, err := os.ReadFile(definitions)
	if err != nil {
		t.Fatal(err)
	}
	// The new version goes at the end of feature_views, before the services.
	src := strings.Replace(string(base), "\nfeature_services:", userTxnV2+"\nfeature_services:", 1)
	if err := os.WriteFile(defs2, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return defs2
}

// checkVersion2 checks that every user's user_txn@2 state in the changelog
// equals the engine's over txns, each applied once, that its feature log
// (in the offline store at offlineDir) has a row for each of those events,
// once, and that no replay marker is left.
func checkVersion2(t *testing.T, brokers []string, defs2, offlineDir string, txns []ingesttest.Txn) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(offlineDir, "_replay", "user_txn", "v2.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the replay marker is still there after ingest took over: %v", err)
	}
	defs, err := features.Load(defs2)
	if err != nil {
		t.Fatal(err)
	}
	ref := ingesttest.Reference(t, defs, txns)
	eng, want := ref.Engines["user_txn@2"], ref.States["user_txn@2"]
	got := map[string][]byte{}
	for _, r := range ingesttest.ConsumeAll(t, brokers, online.ChangelogTopic("quiver", online.Table{View: "user_txn", Version: 2})) {
		got[string(r.Key)] = r.Value
	}
	if len(got) != len(want) {
		t.Errorf("%d users in the user_txn@2 changelog, want %d", len(got), len(want))
	}
	at := int64(0)
	for _, st := range want {
		if last, ok := st.LastEventTime(); ok {
			at = max(at, last)
		}
	}
	gv, wv := make([]features.Value, 4), make([]features.Value, 4)
	counts := featureLogCounts(t, filepath.Join(offlineDir, "features", "user_txn", "v2"))
	for user, st := range want {
		// txn_count is lifetime: each applied event's row counts one more.
		if err := eng.Evaluate(st, at, wv); err != nil {
			t.Fatal(err)
		}
		var rows []int64
		for i := range wv[0].Int() {
			rows = append(rows, i+1)
		}
		if !slices.Equal(counts[user], rows) {
			t.Errorf("%s: feature log rows with txn_count %v, want 1 to %d once each", user, counts[user], len(rows))
		}
		delete(counts, user)
		rec, ok := got[user]
		if !ok {
			t.Errorf("no user_txn@2 state for %s", user)
			continue
		}
		gst, _, err := online.DecodeState(eng, rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Evaluate(gst, at, gv); err != nil {
			t.Fatal(err)
		}
		for i, f := range eng.View().Features {
			if !gv[i].Equal(wv[i]) {
				t.Errorf("%s: user_txn@2:%s = %v, want %v", user, f.Name, gv[i], wv[i])
			}
		}
	}
	for user, c := range counts {
		t.Errorf("%s: %d feature log rows, and no events", user, len(c))
	}
}

// featureLogCounts reads a feature log of user_txn with Apache Arrow's
// Parquet reader, and returns each user's txn_count values, sorted.
func featureLogCounts(t *testing.T, dir string) map[string][]int64 {
	files, err := filepath.Glob(filepath.Join(dir, "date=*", "*.parquet"))
	if err != nil || len(files) == 0 {
		t.Fatalf("feature log %s: %d files, %v", dir, len(files), err)
	}
	counts := map[string][]int64{}
	for _, f := range files {
		tbl := readArrow(t, f)
		if got := tbl.Schema().Field(0).Name + "," + tbl.Schema().Field(2).Name; got != "user_id,txn_count" {
			t.Fatalf("%s: columns %s, want user_id then txn_count third", f, got)
		}
		users, n := column[*array.String](t, tbl, 0), column[*array.Int64](t, tbl, 2)
		for i := range users.Len() {
			counts[users.Value(i)] = append(counts[users.Value(i)], n.Value(i))
		}
		tbl.Release()
	}
	for _, c := range counts {
		slices.Sort(c)
	}
	return counts
}
