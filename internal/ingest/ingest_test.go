package ingest_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/store/offline"
)

const partitions = 4

func loadDefs(t testing.TB) *features.Definitions {
	t.Helper()
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

// cluster is an in-process Kafka-protocol broker on a real TCP port.
func cluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "transactions"), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// txn is one generated transaction and whether ingest must accept it.
type txn struct {
	key, value string
	valid      bool
	reason     string // the DLQ reason of an invalid one
}

// stream makes n valid transactions over a few hours of event time, with
// some out of order within the allowed lateness, and the four kinds of bad
// record spread among them.
func stream(seed uint64, n int) []txn {
	rng := rand.New(rand.NewPCG(seed, 7))
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var out []txn
	for i := range n {
		at := start.Add(time.Duration(i) * 2 * time.Second)
		if rng.IntN(10) == 0 {
			at = at.Add(-time.Duration(rng.IntN(20)) * time.Minute) // late, but within 1h
		}
		user := fmt.Sprintf("u%03d", rng.IntN(40))
		v := fmt.Sprintf(`{"txn_id":"t%d","user_id":%q,"merchant_id":"m%02d","amount":%.2f,"country":%q,"ts":%q}`,
			i, user, rng.IntN(25), float64(rng.IntN(50000))/100-20, []string{"DE", "FR", "US"}[rng.IntN(3)], at.Format(time.RFC3339Nano))
		out = append(out, txn{key: user, value: v, valid: true})
		switch i {
		case n / 5:
			out = append(out, txn{key: user, value: `{"txn_id": "broken`, reason: features.ReasonInvalidJSON})
		case 2 * n / 5:
			out = append(out, txn{key: user, value: `{"txn_id":"x","user_id":"u001","amount":"12.50","ts":"2026-11-20T01:00:00Z"}`, reason: features.ReasonSchema})
		case 3 * n / 5:
			out = append(out, txn{key: user, value: `{"txn_id":"y","user_id":"u001","amount":1.5}`, reason: features.ReasonMissingEventTime})
		case 4 * n / 5:
			late := start.Add(time.Duration(i)*2*time.Second - 3*time.Hour)
			out = append(out, txn{key: user, value: fmt.Sprintf(`{"txn_id":"z","user_id":%q,"amount":3,"ts":%q}`, user, late.Format(time.RFC3339)), reason: features.ReasonLate})
		}
	}
	return out
}

func produce(t testing.TB, brokers []string, txns []txn) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(txns))
	for i, x := range txns {
		recs[i] = &kgo.Record{Key: []byte(x.key), Value: []byte(x.value)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// runIngest runs an ingester until the returned stop is called.
func runIngest(t testing.TB, cfg ingest.Config) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	in, err := ingest.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			if err := in.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitCaughtUp waits until the group has committed everything in the source
// and repartition topics.
func waitCaughtUp(t testing.TB, brokers []string, group string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		topics := []string{"transactions", "quiver.repartition.user", "quiver.repartition.merchant"}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		committed, err2 := adm.FetchOffsets(ctx, group)
		if err == nil && err2 == nil {
			behind := false
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					behind = true
				}
			})
			if !behind {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("ingest did not catch up within 60s")
}

// consumeAll reads a topic from the start to its current end.
func consumeAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for int64(len(out)) < want {
		f := cl.PollFetches(ctx)
		if err := f.Err0(); err != nil {
			t.Fatalf("consume %s: %v (have %d of %d)", topic, err, len(out), want)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// latest keeps the last value per key: what a compacted topic converges to.
func latest(recs []*kgo.Record) map[string][]byte {
	m := map[string][]byte{}
	for _, r := range recs {
		m[string(r.Key)] = r.Value
	}
	return m
}

// features evaluates every entity's changelog state at t.
func evaluateChangelog(t testing.TB, defs *features.Definitions, view string, states map[string][]byte, at int64) map[string][]features.Value {
	t.Helper()
	eng, err := features.NewEngine(defs, defs.View(view, 1))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]features.Value{}
	for key, rec := range states {
		st, _, err := ingest.DecodeStateRecord(eng, rec)
		if err != nil {
			t.Fatalf("%s %s: %v", view, key, err)
		}
		vals := make([]features.Value, len(eng.View().Features))
		if err := eng.Evaluate(st, at, vals); err != nil {
			t.Fatal(err)
		}
		out[key] = vals
	}
	return out
}

// expected applies the valid transactions straight to the engine, per
// entity, as the reference for what ingest must compute.
func expected(t testing.TB, defs *features.Definitions, view, keyField string, txns []txn, at int64) map[string][]features.Value {
	t.Helper()
	eng, err := features.NewEngine(defs, defs.View(view, 1))
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")
	states := map[string]*features.State{}
	for i, x := range txns {
		if !x.valid {
			continue
		}
		var ev features.Event
		if err := src.DecodeJSON([]byte(x.value), &ev); err != nil {
			t.Fatal(err)
		}
		ev.Offset = int64(i)
		key := ev.Fields[src.Field(keyField)].Str()
		if states[key] == nil {
			states[key] = eng.NewState()
		}
		if _, err := eng.Apply(states[key], &ev); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string][]features.Value{}
	for key, st := range states {
		vals := make([]features.Value, len(eng.View().Features))
		if err := eng.Evaluate(st, at, vals); err != nil {
			t.Fatal(err)
		}
		out[key] = vals
	}
	return out
}

func compareFeatures(t testing.TB, view string, got, want map[string][]features.Value) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entities in the changelog, want %d", view, len(got), len(want))
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[key]
		if !ok {
			t.Errorf("%s: no state for %s", view, key)
			continue
		}
		for i := range want[key] {
			// last_country depends on arrival order only through ties of
			// (time, partition, offset), which this stream does not have.
			if !g[i].Equal(want[key][i]) {
				t.Errorf("%s %s feature %d = %v, want %v", view, key, i, g[i], want[key][i])
			}
		}
	}
}

func TestIngest(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := stream(1, 3000)
	produce(t, brokers, txns)

	offlineRoot := t.TempDir()
	off, err := offline.NewDir(offlineRoot)
	if err != nil {
		t.Fatal(err)
	}
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 500})
	waitCaughtUp(t, brokers, "quiver-ingest")
	stop()

	// Every bad record, and nothing else, is in the DLQ with its reason.
	var reasons []string
	for _, r := range consumeAll(t, brokers, "quiver.dlq") {
		for _, h := range r.Headers {
			if h.Key == "quiver-reason" {
				reasons = append(reasons, string(h.Value))
			}
		}
	}
	slices.Sort(reasons)
	want := []string{features.ReasonInvalidJSON, features.ReasonLate, features.ReasonMissingEventTime, features.ReasonSchema}
	slices.Sort(want)
	if !slices.Equal(reasons, want) {
		t.Errorf("DLQ reasons %v, want %v", reasons, want)
	}

	checkResults(t, brokers, defs, txns, offlineRoot)
}

// checkResults compares everything ingest wrote with the reference: the
// changelog states, and the offline event and feature logs row for row.
func checkResults(t *testing.T, brokers []string, defs *features.Definitions, txns []txn, offlineRoot string) {
	t.Helper()
	at := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, v := range []struct{ view, key string }{{"user_txn", "user_id"}, {"merchant_txn", "merchant_id"}} {
		got := evaluateChangelog(t, defs, v.view, latest(consumeAll(t, brokers, "quiver.changelog."+v.view+".v1")), at)
		compareFeatures(t, v.view, got, expected(t, defs, v.view, v.key, txns, at))
	}

	// The event log holds each valid event once; each feature log one row
	// per event its view applied (the fraud views keep amount > 0).
	valid, positive := map[string]bool{}, 0
	for _, x := range txns {
		if x.valid {
			var ev features.Event
			if err := defs.Source("transactions").DecodeJSON([]byte(x.value), &ev); err != nil {
				t.Fatal(err)
			}
			valid[ev.Fields[0].Str()] = true
			if ev.Fields[3].Float() > 0 {
				positive++
			}
		}
	}
	events := readLog(t, filepath.Join(offlineRoot, "events", "transactions"))
	seen := map[string]bool{}
	for _, row := range events {
		id := row[0].Str()
		if !valid[id] || seen[id] {
			t.Fatalf("event log: unexpected or repeated transaction %s", id)
		}
		seen[id] = true
	}
	if len(seen) != len(valid) {
		t.Errorf("event log has %d transactions, want %d", len(seen), len(valid))
	}
	for _, view := range []string{"user_txn", "merchant_txn"} {
		if rows := readLog(t, filepath.Join(offlineRoot, "features", view, "v1")); len(rows) != positive {
			t.Errorf("%s feature log has %d rows, want %d", view, len(rows), positive)
		}
	}
}

// readLog reads every row of every Parquet file below dir.
func readLog(t *testing.T, dir string) [][]features.Value {
	t.Helper()
	var rows [][]features.Value
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".parquet" {
			return err
		}
		_, r, _, err := offline.ReadFile(path)
		rows = append(rows, r...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestIngestTwoInstances runs two ingesters in one group, started while
// events arrive: the result is the same as one ingester's.
func TestIngestTwoInstances(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := stream(2, 6000)
	offlineRoot := t.TempDir()
	off, err := offline.NewDir(offlineRoot)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, txns[:len(txns)/3])
	stop1 := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 200})
	produce(t, brokers, txns[len(txns)/3:2*len(txns)/3])
	stop2 := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 200})
	produce(t, brokers, txns[2*len(txns)/3:])
	waitCaughtUp(t, brokers, "quiver-ingest")
	stop1()
	stop2()
	checkResults(t, brokers, defs, txns, offlineRoot)
}
