package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/s3test"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

func newAdm(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func txnAt(id, user, at string) ingesttest.Txn {
	return ingesttest.Txn{Key: user, Valid: true,
		Value: fmt.Sprintf(`{"txn_id":%q,"user_id":%q,"merchant_id":"m1","amount":5,"country":"DE","ts":%q}`, id, user, at)}
}

// TestLargeRecords: a source topic that takes records larger than ingest
// forwards (its cluster's message.max.bytes raised). An event too large to
// re-key, and a bad record too large to copy, go to the DLQ without their
// bytes, saying where to read them; ingest goes on with the rest.
func TestLargeRecords(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "transactions"), kfake.DefaultNumPartitions(partitions),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8000000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	huge := strings.Repeat("a", 1_500_000)
	txns := []ingesttest.Txn{
		txnAt("a", "u1", "2026-11-20T10:00:00Z"),
		{Key: "u1", Value: `{"txn_id":"` + huge, Reason: features.ReasonInvalidJSON},
		{Key: "u1", Value: `{"txn_id":"` + huge + `","user_id":"u1","merchant_id":"m1","amount":5,"ts":"2026-11-20T10:01:00Z"}`, Reason: ingest.ReasonTooLarge},
		txnAt("b", "u1", "2026-11-20T10:02:00Z"),
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"), kgo.ProducerBatchMaxBytes(8_000_000))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range txns {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(x.Key), Value: []byte(x.Value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	defs := loadDefs(t)
	off, root := newOffline(t)
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	dlq := ingesttest.ConsumeAll(t, brokers, "quiver.dlq")
	reasons := map[string]bool{}
	for _, r := range dlq {
		reasons[ingesttest.Header(r, "quiver-reason")] = true
		if r.Value != nil || !strings.Contains(ingesttest.Header(r, "quiver-error"), "bytes") || ingesttest.Header(r, "quiver-offset") == "" {
			t.Errorf("DLQ record %s: value of %d bytes, error %q: want no value, and its size and origin", ingesttest.Header(r, "quiver-reason"), len(r.Value), ingesttest.Header(r, "quiver-error"))
		}
	}
	if len(dlq) != 2 || !reasons[features.ReasonInvalidJSON] || !reasons[ingest.ReasonTooLarge] {
		t.Errorf("DLQ holds %d records of reasons %v, want one invalid_json and one record_too_large", len(dlq), reasons)
	}
	ingesttest.Check(t, brokers, defs, txns, root)
}

// TestDLQKeepsHeaders: a dead-lettered record keeps its producer's
// headers (trace context), but not one of ingest's own from an earlier
// dead-lettering, which the new ones replace.
func TestDLQKeepsHeaders(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "transactions"), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"))
	if err != nil {
		t.Fatal(err)
	}
	headers := []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}, {Key: "quiver-reason", Value: []byte("late")}, {Key: "source", Value: []byte("svc-a")}}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("u1"), Value: []byte("{broken"), Headers: headers}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	off, _ := newOffline(t)
	stop := runIngest(t, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Offline: off})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	dlq := ingesttest.ConsumeAll(t, brokers, "quiver.dlq")
	if len(dlq) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(dlq))
	}
	var got []string
	for _, h := range dlq[0].Headers {
		if h.Key != "quiver-error" {
			got = append(got, h.Key+"="+string(h.Value))
		}
	}
	want := []string{"quiver-reason=" + features.ReasonInvalidJSON, "quiver-topic=transactions", "quiver-partition=" + ingesttest.Header(dlq[0], "quiver-partition"),
		"quiver-offset=0", "traceparent=00-abc-def-01", "source=svc-a"}
	if !slices.Equal(got, want) {
		t.Errorf("DLQ record headers %v, want %v", got, want)
	}
}

// TestProduceErrorStopsCommits: a dead-lettered record the broker refuses
// (the DLQ topic's max.message.bytes is smaller). Its produce fails after
// the poll's partitions are merged; Run must report it and commit nothing
// past the record, not drop it.
func TestProduceErrorStopsCommits(t *testing.T) {
	brokers := cluster(t)
	adm := newAdm(t, brokers)
	junk := make([]byte, 5000)
	rand.NewChaCha8([32]byte{}).Read(junk) // incompressible
	txns := []ingesttest.Txn{txnAt("a", "u1", "2026-11-20T10:00:00Z"), {Key: "u1", Value: `{"txn_id":"` + string(junk)}}
	ingesttest.Produce(t, brokers, "transactions", txns)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// Lowered once ingest has created it (New raises a lower limit).
	limit := "2000"
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, "quiver.dlq"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	select {
	case err := <-done:
		if !strings.Contains(fmt.Sprint(err), "MESSAGE_TOO_LARGE") {
			t.Errorf("Run: %v, want the DLQ's MESSAGE_TOO_LARGE", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run went on past a record it could not dead-letter")
	}
	if ok, err := ingesttest.CaughtUp(context.Background(), adm, "quiver-ingest", "transactions"); ok || err != nil {
		t.Errorf("caught up %v (%v): the refused record's offset was committed", ok, err)
	}
}

// TestRestoreEndOffsetError: an instance with an empty state store takes
// over a partition and cannot list the changelog's end: it must stop, not
// start the entities afresh and overwrite their history.
func TestRestoreEndOffsetError(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "transactions"), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	defs := loadDefs(t)
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("a", "u1", "2026-11-20T10:00:00Z"), txnAt("b", "u1", "2026-11-20T10:01:00Z")})
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir()})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 30*time.Second)
	stop()

	// Every ListOffsets naming a changelog fails for its partitions.
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.ListOffsets), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ListOffsetsRequest)
		if !failing.Load() || !strings.Contains(req.Topics[0].Topic, ".changelog.") {
			return nil, nil, false
		}
		return ingesttest.ListOffsetsAnswer(req, func(string, int32) (int64, int16) { return -1, kerr.UnknownServerError.Code }), nil, true
	})
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("c", "u1", "2026-11-20T10:02:00Z")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx) }()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		in.Close()
	}
	failing.Store(false)
	if !strings.Contains(fmt.Sprint(err), "end offset") {
		t.Errorf("ingest: %v, want an error about the changelog's end offset", err)
	}
	recs := ingesttest.ConsumeAll(t, brokers, "quiver.changelog.user_txn.v1")
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := online.DecodeState(eng, recs[len(recs)-1].Value)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]features.Value, len(eng.View().Features))
	at, _ := features.ParseTime("2026-11-20T10:05:00Z")
	if err := eng.Evaluate(st, at, out); err != nil {
		t.Fatal(err)
	}
	if n := out[0].Int(); n == 1 {
		t.Errorf("u1's latest state counts 1 event: its history was overwritten")
	}
}

// TestFailedFlushUnderRebalance: a batch's flush fails while Run waits for
// the next poll, and a rebalance collects the error. Run must stop before
// committing anything after the failed batch.
func TestFailedFlushUnderRebalance(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "transactions"), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	defs := loadDefs(t)
	off, root := newOffline(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("x1", "u1", "2026-11-20T23:30:00Z")})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 30*time.Second)

	// x2, a day later and of no merchant: writing its user's feature log
	// fails (a file where the date's directory goes).
	if err := os.WriteFile(filepath.Join(root, "features/user_txn/v1/date=2026-11-21"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{{Key: "u1", Valid: true,
		Value: `{"txn_id":"x2","user_id":"u1","merchant_id":null,"amount":7,"ts":"2026-11-21T00:10:00Z"}`}})
	time.Sleep(2 * time.Second)

	// Another member takes the source's partitions: the rebalance meets
	// the failed flush.
	other, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("quiver-ingest"), kgo.ConsumeTopics("transactions"),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	time.Sleep(4 * time.Second)

	// y for u1, on the repartition topic, as the source's new owner
	// re-keys it: the next batch.
	src := defs.Source("transactions")
	var ev features.Event
	if err := src.DecodeJSON([]byte(`{"txn_id":"y","user_id":"u1","merchant_id":"m1","amount":11,"ts":"2026-11-20T23:50:00Z"}`), &ev); err != nil {
		t.Fatal(err)
	}
	key, _ := online.AppendEntityKey(nil, features.String("u1"))
	header := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "quiver.repartition.user", Key: key, Value: src.AppendEvent(nil, &ev),
		Headers: []kgo.RecordHeader{header("quiver-source", "transactions"), header("quiver-topic", "transactions"),
			header("quiver-partition", "1"), header("quiver-offset", "100")}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run ended without the failed flush's error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run went on after a failed flush")
	}
	// x2 is in the partition of u1's repartition records before y: no
	// commit may pass it while u1's state lacks it.
	committed, err := newAdm(t, brokers).FetchOffsets(context.Background(), "quiver-ingest")
	if err != nil {
		t.Fatal(err)
	}
	recs := ingesttest.ConsumeAll(t, brokers, "quiver.repartition.user")
	for _, r := range recs {
		if string(r.Key) != string(key) || ingesttest.Header(r, "quiver-offset") == "100" {
			continue
		}
		if o, ok := committed.Lookup("quiver.repartition.user", r.Partition); ok && o.At > r.Offset {
			changelog := ingesttest.ConsumeAll(t, brokers, "quiver.changelog.user_txn.v1")
			eng, _ := features.NewEngine(defs, defs.View("user_txn", 1))
			_, applied, err := online.DecodeState(eng, changelog[len(changelog)-1].Value)
			if err != nil {
				t.Fatal(err)
			}
			srcPart, _ := strconv.Atoi(ingesttest.Header(r, "quiver-partition"))
			srcOff, _ := strconv.ParseInt(ingesttest.Header(r, "quiver-offset"), 10, 64)
			if last, ok := applied[int32(srcPart)]; !ok || last < srcOff {
				t.Errorf("repartition.user/%d committed to %d, past transactions/%d@%d, which u1's state never applied (%v)", r.Partition, o.At, srcPart, srcOff, applied)
			}
		}
	}
}

// TestS3DownWhileWriting: an S3 server down while ingest writes a batch,
// for longer than the S3 client's own retries (about 8 s), holds the whole
// offline log, each event once, when it is back: ingest tries the batch's
// files again rather than stop.
func TestS3DownWhileWriting(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	off, err := offline.NewS3Dir(context.Background(), srv.Options(bucket, "offline"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(13, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns[:1500])
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	srv.Kill()
	ingesttest.Produce(t, brokers, "transactions", txns[1500:])
	time.Sleep(12 * time.Second) // the batch's writes fail meanwhile
	srv.Restart()
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop() // fails the test if Run stopped with an error
	ingesttest.Check(t, brokers, defs, txns, srv.Path(bucket, "offline"))
}

// TestValidateNegative: negative durations and sizes are configuration
// errors, not a shutdown that never commits.
func TestValidateNegative(t *testing.T) {
	cfg := ingest.Config{Definitions: loadDefs(t), Brokers: []string{"127.0.0.1:9092"}, DataDir: t.TempDir(),
		ShutdownTimeout: -time.Second, SessionTimeout: -time.Second, CacheBytes: -1, FlushInterval: -time.Second}
	err := cfg.Validate()
	for _, want := range []string{"flush interval -1s: want 10ms to 1m", "shutdown timeout -1s is negative", "session timeout -1s is negative", "cache size -1 is negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
}

// TestFlushIntervalRange: a flush interval a Kafka client cannot wait
// for a fetch is a configuration error, not a client that fails to start.
func TestFlushIntervalRange(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Minute} {
		cfg := ingest.Config{Definitions: loadDefs(t), Brokers: []string{"127.0.0.1:9092"}, DataDir: t.TempDir(), FlushInterval: d}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "want 10ms to 1m") {
			t.Errorf("flush interval %s: %v", d, err)
		}
	}
}

// TestFlushInterval: events that trickle in are made durable together, a
// batch per flush interval, not a poll's handful at a time (each batch
// writes a file per stream to each offline log), and none is lost.
func TestFlushInterval(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	off, root := newOffline(t)
	const interval = 400 * time.Millisecond
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, FlushInterval: interval})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	txns := ingesttest.Stream(2, 200)
	start := time.Now()
	for _, x := range txns { // one at a time: a poll finds a record or two
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(x.Key), Value: []byte(x.Value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	batches := int(time.Since(start)/interval) + 2
	stop()
	ingesttest.Check(t, brokers, defs, txns, root)
	for _, dir := range []string{"events/transactions", "features/user_txn/v1", "features/merchant_txn/v1"} {
		files, err := filepath.Glob(filepath.Join(root, dir, "date=*", "*.parquet"))
		if err != nil {
			t.Fatal(err)
		}
		// A batch writes a file per stream: a source partition.
		if max := batches * partitions; len(files) > max {
			t.Errorf("%s: %d files, want at most %d (%d batches of %d partitions)", dir, len(files), max, batches, partitions)
		}
	}
}

// TestLargeState: an entity's state record larger than the megabyte a Kafka
// topic takes by default (here an 850 kB string kept by `last` and two
// distinct counts of 120 tiles of 128 values; a busy entity's dense
// distinct-count tiles get there alone). Ingest creates its topics to take
// records of online.MaxRecordBytes, and raises an older changelog's limit,
// so the state is published rather than the partition stuck on a flush
// that fails at every restart.
func TestLargeState(t *testing.T) {
	brokers := cluster(t)
	defs, err := features.Parse("large.yaml", []byte(`project: large
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: notes, topic: notes, event_time: ts, schema: {user_id: string, a: string, k: string, ts: timestamp}}
feature_views:
  - name: notes
    version: 1
    entity: user
    source: notes
    features:
      - {name: last_a, agg: last, field: a}
      - {name: ks, agg: count_distinct, field: k, window: 2h, granularity: 1m}
      - {name: ks_too, agg: count_distinct, field: k, window: 2h, granularity: 1m}
`))
	if err != nil {
		t.Fatal(err)
	}
	adm := newAdm(t, brokers)
	if _, err := adm.CreateTopic(context.Background(), partitions, -1, nil, "notes"); err != nil {
		t.Fatal(err)
	}
	// The changelog as an earlier ingest created it: compacted, with the
	// broker's default record limit.
	compact := "compact"
	changelog := online.ChangelogTopic("quiver", online.Table{View: "notes", Version: 1})
	if _, err := adm.CreateTopic(context.Background(), partitions, -1, map[string]*string{"cleanup.policy": &compact}, changelog); err != nil {
		t.Fatal(err)
	}
	// Letters at random: a batch compresses, and the broker's limit is on
	// its compressed size.
	rng := rand.New(rand.NewPCG(1, 2))
	letters := make([]byte, 850_000)
	for i := range letters {
		letters[i] = byte('a' + rng.IntN(26))
	}
	a := string(letters)
	start := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var txns []ingesttest.Txn
	for i := range 120 * 128 { // 128 values a minute: each tile exact and full
		at := start.Add(time.Duration(i/128)*time.Minute + time.Duration(i%128)*time.Millisecond)
		txns = append(txns, ingesttest.Txn{Key: "u1", Value: fmt.Sprintf(`{"user_id":"u1","k":"k%d","ts":%q}`, i, at.Format(time.RFC3339Nano))})
	}
	end := start.Add(2 * time.Hour)
	txns = append(txns, ingesttest.Txn{Key: "u1", Value: `{"user_id":"u1","a":"` + a + `","ts":"` + end.Add(-time.Second).Format(time.RFC3339) + `"}`})
	ingesttest.Produce(t, brokers, "notes", txns)
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir()})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ok, _ := ingesttest.CaughtUp(context.Background(), adm, "quiver-ingest", "notes", "quiver.repartition.user"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ingest did not catch up within 30s")
		}
	}
	stop()
	rec := ingesttest.Changelog(t, brokers, changelog)["u1"]
	if len(rec) <= 1<<20 {
		t.Fatalf("u1's state record takes %d bytes, want over a megabyte", len(rec))
	}
	eng, err := features.NewEngine(defs, defs.Views[0])
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := online.DecodeState(eng, rec)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]features.Value, 3)
	if err := eng.Evaluate(st, end.UnixMilli(), got); err != nil {
		t.Fatal(err)
	}
	if got[0].Str() != a || got[1].Int() < 119*128 || got[2] != got[1] {
		t.Errorf("last_a: %.10q…, %d bytes; ks %v, ks_too %v; want the 850 kB string and the distinct keys of the window", got[0].Str(), len(got[0].Str()), got[1], got[2])
	}
}

// TestNewVersionAtRestart: ingest restarted with a new version of a view
// catches it up from the event log and runs on. The version's changelog is
// created at that start, and its partitions were not yet listed when the
// group assigned them (the admin client's metadata of a moment before):
// ingest stopped on "no end offset listed".
func TestNewVersionAtRestart(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	off, err := offline.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("a", "u1", "2026-11-20T10:00:00Z"), txnAt("b", "u2", "2026-11-20T10:01:00Z")})
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: dataDir, Offline: off})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 30*time.Second)
	stop()

	src, err := os.ReadFile("../../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defs2, err := features.Parse("definitions.yaml", []byte(strings.Replace(string(src), "\nfeature_services:", `
  - name: user_txn
    version: 2
    entity: user
    source: transactions
    features:
      - {name: txn_count, agg: count}
feature_services:`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: defs2, Brokers: brokers, DataDir: dataDir, Offline: off, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("c", "u1", "2026-11-20T10:02:00Z")})
	caughtUp := make(chan struct{})
	go func() {
		defer close(caughtUp)
		ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 30*time.Second)
	}()
	select {
	case err := <-done:
		t.Fatalf("ingest with user_txn@2 stopped: %v", err)
	case <-caughtUp:
	}
	counts := map[string]int64{}
	eng, err := features.NewEngine(defs2, defs2.View("user_txn", 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ingesttest.ConsumeAll(t, brokers, "quiver.changelog.user_txn.v2") {
		st, _, err := online.DecodeState(eng, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]features.Value, 1)
		at, _ := features.ParseTime("2026-11-20T11:00:00Z")
		if err := eng.Evaluate(st, at, out); err != nil {
			t.Fatal(err)
		}
		counts[string(r.Key)] = out[0].Int()
	}
	if want := map[string]int64{"u1": 2, "u2": 1}; !maps.Equal(counts, want) {
		t.Errorf("user_txn@2 counts %v, want %v", counts, want)
	}
}
