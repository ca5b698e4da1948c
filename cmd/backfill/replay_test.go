package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

const fraudDefs = "../../examples/fraud/definitions.yaml"

// userTxn1 is the changelog of the fraud example's user_txn@1.
var userTxn1 = online.ChangelogTopic("quiver", online.Table{View: "user_txn", Version: 1})

// txn is one transaction of the fraud example's source.
type txn struct {
	user   string
	amount float64
	at     time.Time
}

// writeLog writes txns to the event log of the fraud example's
// transactions source as ingest would: one batch, partition 0 from offset 0.
func writeLog(t *testing.T, off *offline.Dir, txns []txn) {
	t.Helper()
	defs, err := features.Load(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")
	cols := offline.EventColumns(src)
	b := offline.Batch{Dir: "events/transactions", Columns: cols, TimeColumn: len(src.Schema), Stream: "transactions/0", FirstOffset: 0, LastOffset: int64(len(txns) - 1)}
	for o, e := range txns {
		ms := e.at.UnixMilli()
		// txn_id, user_id, merchant_id, amount, country, ts
		b.Rows = append(b.Rows, []features.Value{features.String(fmt.Sprintf("t%d", o)), features.String(e.user), features.String("m1"),
			features.Float(e.amount), features.String("DE"), features.Timestamp(ms),
			features.Timestamp(ms), features.String("transactions"), features.Int(0), features.Int(int64(o))})
	}
	if err := off.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// featureLogUsers returns how many rows user_txn@1's feature log holds of
// each user.
func featureLogUsers(t *testing.T, off *offline.Dir) map[string]int {
	t.Helper()
	files, err := off.LogFiles(context.Background(), "features/user_txn/v1")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]int{}
	for _, f := range files {
		_, rows, _, err := off.ReadLogFile(context.Background(), f.Name, "user_id")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			users[r[0].Str()]++
		}
	}
	return users
}

// newStore returns a data directory with an offline store at its default
// place, data/offline, as the binaries' --data-dir opens it.
func newStore(t *testing.T) (data string, off *offline.Dir) {
	t.Helper()
	data = t.TempDir()
	off, err := offline.NewDir(filepath.Join(data, "offline"))
	if err != nil {
		t.Fatal(err)
	}
	return data, off
}

// newCluster starts a Kafka cluster with the fraud example's source topic
// (2 partitions) and any others seeded, and returns its addresses.
func newCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, "transactions")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// entityKey is the changelog key of a user.
func entityKey(user string) string {
	k, _ := online.AppendEntityKey(nil, features.String(user))
	return string(k)
}

// startIngest starts and closes an ingester on the store, which bootstraps
// or catches up every view version before it returns.
func startIngest(t *testing.T, brokers []string, defsPath string, off *offline.Dir) {
	t.Helper()
	defs, err := features.Load(defsPath)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(context.Background(), ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off})
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	in.Close()
}

// TestReplayMissingEventLog: a replay from a store without the view's
// source's event log (a mistyped --offline or --data-dir) fails, naming the
// source and the store, before it writes anything. A changelog and a marker
// left there would make ingest, with the right store, take the version for
// one computed live, and never bootstrap it.
func TestReplayMissingEventLog(t *testing.T) {
	brokers := newCluster(t)
	missing := filepath.Join(t.TempDir(), "no", "such", "store")
	err := run([]string{"replay", "--definitions", fraudDefs, "--offline", "file://" + missing, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1"})
	if !errors.Is(err, replay.ErrNoEventLog) || !strings.Contains(err.Error(), "source transactions") || !strings.Contains(err.Error(), "file://"+missing) {
		t.Errorf("replay from a store that does not exist: %v; want ErrNoEventLog naming the source and the store", err)
	}
	if left, _ := os.ReadDir(missing); len(left) > 0 {
		t.Errorf("the failed replay wrote %v into the store", left)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(context.Background(), userTxn1)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(userTxn1) {
		t.Errorf("the failed replay created %s", userTxn1)
	}

	// Ingest, with the right store, bootstraps the version from its log.
	right, err := offline.NewDir(filepath.Join(t.TempDir(), "offline"))
	if err != nil {
		t.Fatal(err)
	}
	writeLog(t, right, []txn{{"u_old", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	startIngest(t, brokers, fraudDefs, right)
	got := ingesttest.Changelog(t, brokers, userTxn1)
	if _, ok := got[entityKey("u_old")]; !ok {
		t.Errorf("ingest did not bootstrap user_txn@1 from the right store: u_old has no state (%d states)", len(got))
	}
}

// TestReplayChangelogOfAnotherSize: a changelog that exists with another
// partition count than the largest source topic is refused before any
// state is published: ingest would refuse it, and its entities would be in
// partitions ingest does not read them from. (A changelog without a
// replay marker is refused before, as computed live.)
func TestReplayChangelogOfAnotherSize(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(3, userTxn1))
	data, off := newStore(t)
	writeLog(t, off, []txn{{"u1", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	defs, err := features.Load(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	// As a replay killed before it created the changelog leaves it.
	if err := replay.WriteMarker(context.Background(), off, defs.View("user_txn", 1), replay.Marker{}); err != nil {
		t.Fatal(err)
	}
	err = run([]string{"replay", "--definitions", fraudDefs, "--data-dir", data, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1"})
	if err == nil || !strings.Contains(err.Error(), "has 3 partitions, want 2") {
		t.Fatalf("replay into a changelog of 3 partitions beside a source of 2: %v; want an error naming both counts", err)
	}
	if got := ingesttest.Changelog(t, brokers, userTxn1); len(got) != 0 {
		t.Errorf("%d states published into it", len(got))
	}
}

// TestReplayEmptyRange: a store whose event log holds no event in
// --from..--to is the right store with nothing to count yet: the replay
// succeeds, publishes no state and records the log as covered.
func TestReplayEmptyRange(t *testing.T) {
	brokers := newCluster(t)
	data, off := newStore(t)
	writeLog(t, off, []txn{{"u1", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	if err := run([]string{"replay", "--definitions", fraudDefs, "--data-dir", data, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1",
		"--from", "2026-11-21T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if got := ingesttest.Changelog(t, brokers, userTxn1); len(got) != 0 {
		t.Errorf("changelog after a replay of nothing: %d states; want none", len(got))
	}
	defs, err := features.Load(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := replay.ReadMarker(context.Background(), off, defs.View("user_txn", 1))
	if err != nil || !ok || m.Covered[0] != 0 || !m.Since.IsZero() {
		t.Errorf("marker %+v, %v, %v; want partition 0 covered up to offset 0", m, ok, err)
	}
}

// TestReplayRerunRemovesStaleStates: a replay recomputes the version's
// states, so running it again leaves exactly the states it computed: an
// entity it has no event for (here, none since --from) loses the state an
// earlier run published, in the changelog and in Redis. Serve would
// otherwise answer with counts --from excluded, and ingest's catch-up would
// carry them on.
func TestReplayRerunRemovesStaleStates(t *testing.T) {
	brokers := newCluster(t)
	addr := ingesttest.StartRedis(t)
	data, off := newStore(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	writeLog(t, off, []txn{
		{"u_old", 10, day.Add(1 * time.Hour)},
		{"u_old", 20, day.Add(2 * time.Hour)},
		{"u_new", 30, day.Add(12 * time.Hour)},
	})
	base := []string{"replay", "--definitions", fraudDefs, "--data-dir", data, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1",
		"--online", "redis", "--redis-addr", addr}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	states := func() (changelog, inRedis map[string]bool) {
		t.Helper()
		got := ingesttest.Changelog(t, brokers, userTxn1)
		changelog, inRedis = map[string]bool{}, map[string]bool{}
		for _, u := range []string{"u_old", "u_new"} {
			_, changelog[u] = got[entityKey(u)]
			n, err := rdb.Exists(context.Background(), online.RedisKey("quiver", online.Table{View: "user_txn", Version: 1}, entityKey(u))).Result()
			if err != nil {
				t.Fatal(err)
			}
			inRedis[u] = n == 1
		}
		return changelog, inRedis
	}
	// In memory, then spilled event by event (a bucket of its own for
	// each user but by chance).
	for _, limit := range []string{"1GiB", "1"} {
		args := append(slices.Clone(base), "--memory-limit", limit)
		if err := run(args); err != nil {
			t.Fatal(err)
		}
		if c, r := states(); !c["u_old"] || !c["u_new"] || !r["u_old"] || !r["u_new"] {
			t.Fatalf("--memory-limit %s, after a replay of the whole log: changelog %v, Redis %v; want both users in both", limit, c, r)
		}
		// Again, counting only events since 06:00: u_old has none.
		if err := run(append(args, "--from", "2026-11-20T06:00:00Z")); err != nil {
			t.Fatal(err)
		}
		if c, r := states(); c["u_old"] || !c["u_new"] || r["u_old"] || !r["u_new"] {
			t.Errorf("--memory-limit %s, after a replay --from 06:00: changelog %v, Redis %v; want u_new alone in both (u_old's events are at 01:00 and 02:00)", limit, c, r)
		}
	}
}

// withSource writes the fraud example's definitions plus yaml (a source,
// and views after "feature_views:") to a file, and returns its path.
func withSource(t *testing.T, source, views string) string {
	t.Helper()
	src, err := os.ReadFile(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	defs := strings.Replace(string(src), "\nfeature_views:\n", source+"\nfeature_views:\n"+views, 1)
	path := filepath.Join(t.TempDir(), "definitions.yaml")
	if err := os.WriteFile(path, []byte(defs), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const clicksSource = `
  - name: clicks
    topic: clicks
    format: json
    event_time: ts
    schema: {user_id: string, ts: timestamp}
`

// TestReplayChangelogPartitions: replay sizes a changelog it creates as
// ingest sizes its topics, by the largest source topic a view reads; a
// larger topic of a source no view reads does not count. Otherwise ingest
// refuses to start until the replayed changelog is deleted. A source a view
// reads whose topic does not exist yet leaves the size unknown: replay
// refuses, where ingest would wait.
func TestReplayChangelogPartitions(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(4, "clicks"))
	data, off := newStore(t)
	writeLog(t, off, []txn{{"u1", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	unread := withSource(t, clicksSource, "")
	if err := run([]string{"replay", "--definitions", unread, "--data-dir", data, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1"}); err != nil {
		t.Fatal(err)
	}
	startIngest(t, brokers, unread, off)

	views := `  - name: user_views
    version: 1
    entity: user
    source: page_views
    features:
      - {name: views_1h, agg: count, window: 1h}

`
	read := withSource(t, strings.ReplaceAll(clicksSource, "clicks", "page_views"), views)
	fresh := newCluster(t)
	data, off = newStore(t) // of a version ingest has not taken over
	writeLog(t, off, []txn{{"u1", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	err := run([]string{"replay", "--definitions", read, "--data-dir", data, "--brokers", strings.Join(fresh, ","), "--view", "user_txn@1"})
	if err == nil || !strings.Contains(err.Error(), "page_views") {
		t.Errorf("replay while the topic of a source a view reads is missing: %v; want an error naming it", err)
	}
}

// TestReplayFromFailedPartWay: a replay --from that fails part way (here,
// its changelog cannot be created) leaves a pending marker, from which
// ingest replays the version itself; it leaves out the events before --from
// as the replay would have, rather than counting the whole log.
func TestReplayFromFailedPartWay(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "transactions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.CreateTopicsRequest)
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic, st.ErrorCode = rt.Topic, kerr.PolicyViolation.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	data, off := newStore(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	writeLog(t, off, []txn{
		{"u_old", 10, day.Add(1 * time.Hour)},
		{"u_both", 20, day.Add(2 * time.Hour)},
		{"u_both", 30, day.Add(12 * time.Hour)},
	})
	from := day.Add(6 * time.Hour)
	err = run([]string{"replay", "--definitions", fraudDefs, "--data-dir", data, "--brokers", strings.Join(brokers, ","),
		"--view", "user_txn@1", "--from", from.Format(time.RFC3339)})
	if err == nil {
		t.Fatal("the replay succeeded, though its changelog could not be created")
	}
	defs, err := features.Load(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok, err := replay.ReadMarker(context.Background(), off, defs.View("user_txn", 1)); err != nil || !ok || len(m.Covered) != 0 || !m.Since.Equal(from) {
		t.Fatalf("marker after the failed replay: %+v, %v, %v; want pending, since %v", m, ok, err, from)
	}

	startIngest(t, brokers, fraudDefs, off)
	got := ingesttest.Changelog(t, brokers, userTxn1)
	if _, ok := got[entityKey("u_old")]; ok {
		t.Error("u_old, whose only event is before --from, has a state")
	}
	rec, ok := got[entityKey("u_both")]
	if !ok {
		t.Fatal("u_both has no state")
	}
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := online.DecodeState(eng, rec)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]features.Value, len(defs.View("user_txn", 1).Features))
	if err := eng.Evaluate(st, day.Add(13*time.Hour).UnixMilli(), out); err != nil {
		t.Fatal(err)
	}
	if rows := featureLogUsers(t, off); len(rows) != 1 || rows["u_both"] != 1 {
		t.Errorf("feature log rows by user %v, want u_both's event since --from", rows)
	}
	for i, f := range defs.View("user_txn", 1).Features {
		if f.Name == "amount_max_24h" && out[i] != features.Float(30) {
			t.Errorf("u_both's amount_max_24h %v, want 30: the 02:00 event of 20 is before --from", out[i])
		}
		if f.Name == "amount_avg_24h" && out[i] != features.Float(30) {
			t.Errorf("u_both's amount_avg_24h %v, want 30 (one event since --from)", out[i])
		}
	}
}

// TestReplayRefusedOnceLive: once ingest has taken a version over (its
// changelog exists and the replay's marker is gone), a replay of it is
// refused, and changes nothing, even under a mistyped --topic-prefix,
// which finds no changelog; before that, it may run again, and rewrites
// the version's feature log.
func TestReplayRefusedOnceLive(t *testing.T) {
	brokers := newCluster(t)
	data, off := newStore(t)
	writeLog(t, off, []txn{{"u1", 10, time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)}})
	args := []string{"replay", "--definitions", fraudDefs, "--data-dir", data, "--brokers", strings.Join(brokers, ","), "--view", "user_txn@1"}
	for range 2 { // not taken over yet: a replay may run again
		if err := run(args); err != nil {
			t.Fatal(err)
		}
	}
	startIngest(t, brokers, fraudDefs, off)
	// Each replay rewrote the feature log, which has the one event's row.
	if rows := featureLogUsers(t, off); len(rows) != 1 || rows["u1"] != 1 {
		t.Errorf("feature log rows by user %v, want u1's one", rows)
	}
	before := ingesttest.Changelog(t, brokers, userTxn1)
	err := run(args)
	if !errors.Is(err, replay.ErrComputedLive) || !strings.Contains(err.Error(), "user_txn@1") {
		t.Fatalf("a replay of the version ingest took over: %v, want ErrComputedLive naming it", err)
	}
	err = run(append(slices.Clone(args), "--topic-prefix", "qiver"))
	if !errors.Is(err, replay.ErrComputedLive) || !strings.Contains(err.Error(), "its feature log features/user_txn/v1 has rows") {
		t.Fatalf("a replay of the version ingest took over, under another topic prefix: %v, want ErrComputedLive naming its feature log", err)
	}
	if rows := featureLogUsers(t, off); len(rows) != 1 || rows["u1"] != 1 {
		t.Errorf("feature log rows by user after the refused replays %v, want u1's one", rows)
	}
	defs, err := features.Load(fraudDefs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := replay.ReadMarker(context.Background(), off, defs.View("user_txn", 1)); ok || err != nil {
		t.Errorf("the refused replay left a marker (%v, %v)", ok, err)
	}
	if after := ingesttest.Changelog(t, brokers, userTxn1); len(after) != len(before) {
		t.Errorf("changelog: %d states before the refused replay, %d after", len(before), len(after))
	}
}
