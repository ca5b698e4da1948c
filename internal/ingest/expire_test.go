package ingest_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
)

// TestExpire: states whose latest event is older than their view's TTL
// (720h) are deleted, from the changelog with a tombstone and from Redis;
// the others stay. An event afterwards starts its entity's state anew. A
// restart, on the same state store or on one restored from the changelog,
// has nothing left to delete.
func TestExpire(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	brokers := cluster(t)
	defs := loadDefs(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	now := time.Now().UTC()
	old := now.Add(-31 * 24 * time.Hour).Format(time.RFC3339Nano)
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{
		txnAt("t1", "gone1", old), txnAt("t2", "gone2", old), txnAt("t3", "kept", now.Add(-time.Minute).Format(time.RFC3339Nano)),
	})
	dataDir := t.TempDir()
	run := func(dataDir string) (stop func(), reg *prometheus.Registry, logs *bytes.Buffer) {
		reg, logs = prometheus.NewRegistry(), &bytes.Buffer{}
		stop = runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: dataDir, Redis: rdb,
			ExpireInterval: 100 * time.Millisecond, Registerer: reg,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		return stop, reg, logs
	}
	stop, reg, _ := run(dataDir)
	users := func() []string {
		return slices.Sorted(func(yield func(string) bool) {
			for k := range ingesttest.Changelog(t, brokers, "quiver.changelog.user_txn.v1") {
				if !yield(k) {
					return
				}
			}
		})
	}
	waitFor(t, func() bool { return slices.Equal(users(), []string{"kept"}) }, "the changelog to hold only user kept")
	if got := expired(t, reg); got["user_txn@1"] != 2 || got["merchant_txn@1"] != 0 {
		t.Errorf("expired = %v, want user_txn@1 2 and merchant_txn@1 0 (m1's latest event is recent)", got)
	}
	ingesttest.CheckRedis(t, brokers, addr) // Redis holds what the changelog holds: gone1 and gone2 deleted
	// expire finds the partition of a state in the store as the producer
	// chose it: by the hash of its key.
	for _, r := range ingesttest.ConsumeAll(t, brokers, "quiver.changelog.user_txn.v1") {
		if p := kgo.StickyKeyPartitioner(nil).ForTopic(r.Topic).Partition(r, partitions); p != int(r.Partition) {
			t.Errorf("%s is in partition %d; its key hashes to %d", r.Key, r.Partition, p)
		}
	}

	again := now.Format(time.RFC3339Nano)
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("t4", "gone1", again)})
	waitFor(t, func() bool { return slices.Equal(users(), []string{"gone1", "kept"}) }, "gone1 to come back")
	stop()
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		t.Fatal(err)
	}
	st, applied, err := online.DecodeState(eng, ingesttest.Changelog(t, brokers, "quiver.changelog.user_txn.v1")["gone1"])
	if err != nil {
		t.Fatal(err)
	}
	ref := eng.NewState() // the new event alone: nothing of the expired state
	var ev features.Event
	if err := defs.Source("transactions").DecodeJSON([]byte(txnAt("t4", "gone1", again).Value), &ev); err != nil {
		t.Fatal(err)
	}
	ev.Partition, ev.Offset = only(t, applied)
	if _, err := eng.Apply(ref, &ev); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(eng.AppendState(nil, st), eng.AppendState(nil, ref)) {
		t.Error("gone1's state after a new event is not that of the new event alone")
	}

	for _, dir := range []string{dataDir, t.TempDir()} { // the same state store; one restored from the changelog
		stop, reg, logs := run(dir)
		ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
		time.Sleep(time.Second) // ten sweeps
		stop()
		if got := expired(t, reg); got["user_txn@1"] != 0 || got["merchant_txn@1"] != 0 {
			t.Errorf("restarted: expired = %v, want none", got)
		}
		if strings.Contains(logs.String(), "expire") {
			t.Errorf("restarted: %s", logs)
		}
	}
}

// only returns the one partition and offset of applied.
func only(t *testing.T, applied map[int32]int64) (int32, int64) {
	t.Helper()
	if len(applied) != 1 {
		t.Fatalf("applied offsets %v, want one partition", applied)
	}
	for p, o := range applied {
		return p, o
	}
	panic("unreachable")
}

// expired returns quiver_ingest_states_expired_total by view.
func expired(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range gather(t, reg, "quiver_ingest_states_expired_total") {
		out[s.labels["view"]] = s.value
	}
	return out
}

// waitFor polls cond every 50 ms for up to 30 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
