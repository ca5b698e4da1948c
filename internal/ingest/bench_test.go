package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// The benchmarks run the fraud example end to end: transactions from
// fraudgen on an in-process kfake broker reached over TCP, the real
// Ingester with both views and the offline logs on, and, for the ceilings,
// plain kgo clients against the same broker. Their helpers are their own
// (bench prefix), so that the tests' helpers can change freely.
//
// See docs/BENCHMARKS.md for the figures and the command that produced them.

const (
	// benchEvents is how many transactions BenchmarkIngest and the Kafka
	// ceilings produce: a week of event time for 1,000 users at 200
	// merchants.
	benchEvents = 200_000
	// benchSpan is the event time benchEvents cover.
	benchSpan = 7 * 24 * time.Hour
	// benchPartitions is the partition count of the source topic, as in the
	// tests; ingest gives its internal topics as many.
	benchPartitions = 4
	// benchSource is the source topic of the fraud example.
	benchSource = "transactions"
	// benchGroup is the consumer group of the benchmarked ingesters.
	benchGroup = "quiver-ingest"

	// freshnessRate is the paced produce rate of BenchmarkIngestFreshness,
	// in events per second.
	freshnessRate = 10_000
	// freshnessFor is how long BenchmarkIngestFreshness produces at
	// freshnessRate.
	freshnessFor = 10 * time.Second
	// freshnessWarmup is how many events BenchmarkIngestFreshness sends, and
	// waits for, before it measures: the group has joined and every topic
	// has data by then.
	freshnessWarmup = 1_000
	// freshnessChangelog is the changelog the freshness is read from.
	freshnessChangelog = "quiver.changelog.user_txn.v1"
)

// benchTopics are the topics the ingest group consumes.
var benchTopics = []string{benchSource, "quiver.repartition.user", "quiver.repartition.merchant"}

// benchTxn is one pre-generated transaction: its Kafka key and JSON value.
type benchTxn struct{ key, value []byte }

// benchTransactions generates benchEvents transactions once per test binary:
// fraudgen with a fixed seed and its default population (1,000 users, 200
// merchants), spread evenly over benchSpan of event time, keyed by user.
var benchTransactions = sync.OnceValues(func() ([]benchTxn, error) {
	g, err := fraudgen.New(fraudgen.Config{
		Seed:      1,
		Users:     1000,
		Merchants: 200,
		Rate:      benchEvents / benchSpan.Seconds(),
	})
	if err != nil {
		return nil, err
	}
	txns := make([]benchTxn, benchEvents)
	for i := range txns {
		ev := g.Next()
		txns[i] = benchTxn{key: ev.Key(), value: ev.JSON()}
	}
	return txns, nil
})

// benchData returns the benchmark transactions and their total value bytes.
func benchData(b *testing.B) ([]benchTxn, int64) {
	b.Helper()
	txns, err := benchTransactions()
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, t := range txns {
		size += int64(len(t.value))
	}
	return txns, size
}

// benchDefs loads the fraud example's definitions.
func benchDefs(b *testing.B) *features.Definitions {
	b.Helper()
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return defs
}

// benchBroker starts a fresh in-process Kafka-protocol broker on a real TCP
// port, with the source topic. The caller closes it, so that each benchmark
// iteration can start from an empty one.
func benchBroker(b *testing.B) (*kfake.Cluster, []string) {
	b.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, benchSource), kfake.DefaultNumPartitions(benchPartitions))
	if err != nil {
		b.Fatal(err)
	}
	return c, c.ListenAddrs()
}

// benchClient connects a kgo client to brokers. It is closed when the
// benchmark ends, if not before.
func benchClient(b *testing.B, brokers []string, opts ...kgo.Opt) *kgo.Client {
	b.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl
}

// benchProduce produces txns to the source topic and waits for every ack.
func benchProduce(b *testing.B, cl *kgo.Client, txns []benchTxn) {
	b.Helper()
	recs := make([]*kgo.Record, len(txns))
	for i, t := range txns {
		recs[i] = &kgo.Record{Topic: benchSource, Key: t.key, Value: t.value}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatalf("produce: %v", err)
	}
}

// benchIngest starts an Ingester with the fraud definitions and the offline
// logs on, in fresh directories, registering its metrics with reg (which may
// be nil), and returns the function that stops it.
func benchIngest(b *testing.B, defs *features.Definitions, brokers []string, dataDir string, off *offline.Dir, reg prometheus.Registerer) (stop func()) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in, err := ingest.New(ctx, ingest.Config{
		Definitions: defs,
		Brokers:     brokers,
		GroupID:     benchGroup,
		DataDir:     dataDir,
		Offline:     off,
		Logger:      slog.New(slog.DiscardHandler),
		Registerer:  reg,
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("run: %v", err)
		}
		if err := in.Close(); err != nil {
			b.Errorf("close: %v", err)
		}
	}
}

// benchFlushMetric is the ingester's histogram of the time it takes to make a
// batch durable (offline files, produce, state store, commit).
const benchFlushMetric = "quiver_ingest_batch_flush_duration_seconds"

// benchFlushes returns how many batches an ingester registered with reg has
// made durable, and the time that took in all.
func benchFlushes(b *testing.B, reg *prometheus.Registry) (uint64, time.Duration) {
	b.Helper()
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == benchFlushMetric && len(f.GetMetric()) == 1 {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), time.Duration(h.GetSampleSum() * float64(time.Second))
		}
	}
	b.Fatalf("the ingester registered no histogram %s", benchFlushMetric)
	return 0, 0
}

// benchOffline opens an offline store in a fresh directory.
func benchOffline(b *testing.B) *offline.Dir {
	b.Helper()
	off, err := offline.NewDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return off
}

// benchAwaitCommitted polls every 5 ms until group has committed every
// record of topics, and returns when it first saw a commit of the group.
//
// It reads the commits before the end offsets: once a source partition is
// committed, everything ingest re-keyed from it is in the repartition
// topics already, so end offsets read afterwards are final.
func benchAwaitCommitted(ctx context.Context, adm *kadm.Client, group string, topics ...string) (first time.Time, err error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return first, fmt.Errorf("fetch committed offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return first, fmt.Errorf("list end offsets: %w", err)
		}
		now := time.Now()
		if first.IsZero() && len(committed) > 0 {
			first = now
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if o.Err != nil || o.Offset > 0 && (!ok || c.At < o.Offset) {
				done = false
			}
		})
		if done {
			return first, nil
		}
		select {
		case <-ctx.Done():
			return first, fmt.Errorf("wait for commits: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// benchEndOffsets sums the end offsets of a topic's partitions: how many
// records it has had.
func benchEndOffsets(b *testing.B, adm *kadm.Client, topic string) int64 {
	b.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// BenchmarkIngest measures end-to-end ingest throughput: benchEvents
// transactions are produced beforehand to a fresh broker, and the timer runs
// from starting the Ingester (connect, create topics, join the group) until
// the group has committed every record of the source and both repartition
// topics, that is until every event is in both views' state, changelogs and
// offline logs.
//
// Besides events/s it reports the time to the group's first commit
// (start-ms: joining and the first batch), the rate after it
// (steady-events/s, counting the first batch's records as done at start);
// the batches processed per run
// (batches) and the share of the timed wall time the ingester spent making
// them durable (flush-share: offline files, produce, state store, commit,
// from its own flush histogram); the changelog records written per event
// (state-writes/event); and the heap allocations per event of the whole
// process (allocs/event: the in-process broker's included). One op is one
// run over all benchEvents.
func BenchmarkIngest(b *testing.B) {
	defs := benchDefs(b)
	txns, size := benchData(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var start, flushing time.Duration
	var writes int64
	var mallocs, batches uint64
	var ms runtime.MemStats
	b.ResetTimer() // loading and generating the input is not timed
	for range b.N {
		b.StopTimer()
		c, brokers := benchBroker(b)
		producer := benchClient(b, brokers)
		benchProduce(b, producer, txns)
		producer.Close()
		adm := kadm.NewClient(benchClient(b, brokers))
		dataDir, off, reg := b.TempDir(), benchOffline(b), prometheus.NewRegistry()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()

		began := time.Now()
		stop := benchIngest(b, defs, brokers, dataDir, off, reg)
		first, err := benchAwaitCommitted(ctx, adm, benchGroup, benchTopics...)

		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		cancel()
		stop()
		if err != nil {
			b.Fatal(err)
		}
		start += first.Sub(began)
		n, d := benchFlushes(b, reg)
		batches, flushing = batches+n, flushing+d
		writes += benchEndOffsets(b, adm, "quiver.changelog.user_txn.v1") + benchEndOffsets(b, adm, "quiver.changelog.merchant_txn.v1")
		adm.Close()
		c.Close()
	}
	events := float64(b.N * benchEvents)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms")
	// After the first commit, counting conservatively: as if the first
	// batch (at most the default 10,000 source records) had cost nothing.
	steady := (events - float64(b.N*10_000)) / (b.Elapsed() - start).Seconds()
	b.ReportMetric(steady, "steady-events/s")
	b.ReportMetric(float64(batches)/float64(b.N), "batches")
	b.ReportMetric(flushing.Seconds()/b.Elapsed().Seconds(), "flush-share")
	b.ReportMetric(float64(writes)/events, "state-writes/event")
	b.ReportMetric(float64(mallocs)/events, "allocs/event")
}

// BenchmarkKafkaConsume is the ceiling of BenchmarkIngest: a plain kgo group
// consumer reads the same pre-produced transactions from the same kind of
// broker, doing nothing with them. The timer runs from creating the client
// (joining the group included, as for ingest) until it has every record.
func BenchmarkKafkaConsume(b *testing.B) {
	txns, size := benchData(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		c, brokers := benchBroker(b)
		producer := benchClient(b, brokers)
		benchProduce(b, producer, txns)
		producer.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		b.StartTimer()

		cl := benchClient(b, brokers,
			kgo.ConsumerGroup(fmt.Sprintf("bench-consume-%d", i)),
			kgo.ConsumeTopics(benchSource),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
		)
		for n := 0; n < len(txns); {
			fetches := cl.PollRecords(ctx, 10_000)
			if err := fetches.Err0(); err != nil {
				b.Fatalf("consume: %v (have %d of %d)", err, n, len(txns))
			}
			n += fetches.NumRecords()
		}

		b.StopTimer()
		cl.Close()
		cancel()
		c.Close()
	}
	b.ReportMetric(float64(b.N*benchEvents)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkKafkaProduce is the produce side of the ceiling: the same
// transactions produced to a fresh broker by a kgo client with its default
// settings, until every record is acknowledged. Ingest produces about three
// records per event (two re-keyed copies and the changelog's share).
func BenchmarkKafkaProduce(b *testing.B) {
	txns, size := benchData(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c, brokers := benchBroker(b)
		producer := benchClient(b, brokers)
		b.StartTimer()

		benchProduce(b, producer, txns)

		b.StopTimer()
		producer.Close()
		c.Close()
	}
	b.ReportMetric(float64(b.N*benchEvents)/b.Elapsed().Seconds(), "events/s")
}

// freshnessEvent is one event of the paced load: its user, where it landed
// in the source topic, and when it was handed to the producer.
type freshnessEvent struct {
	user      string
	partition int32
	offset    int64
	at        time.Time
}

// freshnessCoverage is one changelog record of a user as a serving replica
// sees it: when it was consumed and, per source partition, the offset of
// the latest event its state has applied.
type freshnessCoverage struct {
	at      time.Time
	applied map[int32]int64
}

// freshnessWatch reads a changelog from the start and keeps each entity's
// coverages in consume order.
type freshnessWatch struct {
	mu   sync.Mutex
	byID map[string][]freshnessCoverage
	next map[int32]int64 // partition → next offset to read
	err  error
}

// run consumes until ctx ends. The consume time of a record is when its
// fetch returned, before any decoding.
func (w *freshnessWatch) run(ctx context.Context, cl *kgo.Client, eng *features.Engine) {
	for {
		fetches := cl.PollFetches(ctx)
		at := time.Now()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		fetches.EachError(func(t string, p int32, err error) {
			w.err = errors.Join(w.err, fmt.Errorf("consume %s/%d: %w", t, p, err))
		})
		fetches.EachRecord(func(r *kgo.Record) {
			w.next[r.Partition] = r.Offset + 1
			_, applied, err := online.DecodeState(eng, r.Value)
			if err != nil {
				w.err = errors.Join(w.err, fmt.Errorf("decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
				return
			}
			w.byID[string(r.Key)] = append(w.byID[string(r.Key)], freshnessCoverage{at: at, applied: applied})
		})
		w.mu.Unlock()
	}
}

// caughtUp reports whether the watch has read up to ends.
func (w *freshnessWatch) caughtUp(ends kadm.ListedOffsets) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > w.next[o.Partition] {
			done = false
		}
	})
	return done
}

// latency is how long after it was sent an event's user first had a
// changelog record whose state covers the event; false if none has.
func (w *freshnessWatch) latency(e freshnessEvent) (time.Duration, bool) {
	covs := w.byID[e.user] // applied offsets only grow along a key's records
	i := sort.Search(len(covs), func(i int) bool {
		o, ok := covs[i].applied[e.partition]
		return ok && o >= e.offset
	})
	if i == len(covs) {
		return 0, false
	}
	return covs[i].at.Sub(e.at), true
}

// BenchmarkIngestFreshness measures how fresh served features are under a
// steady load: fraudgen transactions re-stamped with the current time are
// produced at freshnessRate for freshnessFor into a running Ingester, and a
// separate consumer reads the user_txn changelog from the start, as a
// serving replica does. An event's latency runs from when it was handed to
// the producer (kgo's defaults, a 10 ms linger included) until the first
// changelog record of its user whose applied offsets cover the event's
// source partition and offset was consumed.
//
// It reports the latency's p50, p99 and maximum over every event of every
// iteration in milliseconds, the produce rate achieved (events/s), and the
// mean time the ingester took to make one batch durable (flush-ms: offline
// files, produce, state store, commit); an event waits for two batches, the
// source's and the repartition topic's.
func BenchmarkIngestFreshness(b *testing.B) {
	defs := benchDefs(b)
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		b.Fatal(err)
	}
	var latencies, flushing []time.Duration
	var produced float64
	var batches uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		reg := prometheus.NewRegistry()
		lat, rate := freshnessRun(b, defs, eng, reg)
		latencies = append(latencies, lat...)
		produced += rate
		n, d := benchFlushes(b, reg)
		batches, flushing = batches+n, append(flushing, d)
	}
	slices.Sort(latencies)
	ms := func(q float64) float64 {
		d := latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
		return float64(d.Microseconds()) / 1000
	}
	b.ReportMetric(0, "ns/op") // one op is freshnessFor of paced load
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
	b.ReportMetric(produced/float64(b.N), "events/s")
	var flushed time.Duration
	for _, d := range flushing {
		flushed += d
	}
	b.ReportMetric(float64(flushed.Microseconds())/1000/float64(batches), "flush-ms")
	// Each batch writes a file per source partition to each offline log.
	b.ReportMetric(float64(batches)/float64(b.N), "batches")
}

// freshnessRun is one iteration of BenchmarkIngestFreshness, on a fresh
// broker and fresh directories, with the timer running only while it
// produces and waits for the last event. It returns every event's latency
// and the produce rate achieved. The ingester's metrics go to reg.
func freshnessRun(b *testing.B, defs *features.Definitions, eng *features.Engine, reg prometheus.Registerer) ([]time.Duration, float64) {
	b.Helper()
	g, err := fraudgen.New(fraudgen.Config{Seed: 2, Users: 1000, Merchants: 200})
	if err != nil {
		b.Fatal(err)
	}
	next := func() (key, value []byte) {
		ev := g.Next()
		ev.Time = time.Now().UTC()
		return ev.Key(), ev.JSON()
	}

	c, brokers := benchBroker(b)
	defer c.Close()
	stop := benchIngest(b, defs, brokers, b.TempDir(), benchOffline(b), reg)
	defer stop()
	adm := kadm.NewClient(benchClient(b, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), freshnessFor+2*time.Minute)
	defer cancel()

	producer := benchClient(b, brokers, kgo.DefaultProduceTopic(benchSource))
	warmup := make([]*kgo.Record, freshnessWarmup)
	for i := range warmup {
		k, v := next()
		warmup[i] = &kgo.Record{Key: k, Value: v}
	}
	if err := producer.ProduceSync(ctx, warmup...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	if _, err := benchAwaitCommitted(ctx, adm, benchGroup, benchTopics...); err != nil {
		b.Fatal(err)
	}

	w := &freshnessWatch{byID: map[string][]freshnessCoverage{}, next: map[int32]int64{}}
	reader := benchClient(b, brokers, kgo.ConsumeTopics(freshnessChangelog), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	readCtx, stopReading := context.WithCancel(ctx)
	var reading sync.WaitGroup
	reading.Go(func() { w.run(readCtx, reader, eng) })
	defer func() { stopReading(); reading.Wait() }()

	b.StartTimer()
	var mu sync.Mutex
	var sent []freshnessEvent
	var produceErr error
	total := int(freshnessRate * freshnessFor.Seconds())
	start := time.Now()
	for n := 0; n < total; {
		due := min(total, int(time.Since(start).Seconds()*freshnessRate))
		for ; n < due; n++ {
			k, v := next()
			user, at := string(k), time.Now()
			producer.Produce(ctx, &kgo.Record{Key: k, Value: v}, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					produceErr = errors.Join(produceErr, err)
					return
				}
				sent = append(sent, freshnessEvent{user: user, partition: r.Partition, offset: r.Offset, at: at})
			})
		}
		time.Sleep(time.Millisecond)
	}
	rate := float64(total) / time.Since(start).Seconds()
	if err := producer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	mu.Lock() // every promise has been called: Flush waited for them
	events, err := sent, produceErr
	mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := benchAwaitCommitted(ctx, adm, benchGroup, benchTopics...); err != nil {
		b.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, freshnessChangelog)
	if err != nil {
		b.Fatal(err)
	}
	for !w.caughtUp(ends) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()

	stopReading()
	reading.Wait()
	if w.err != nil {
		b.Fatal(w.err)
	}
	latencies := make([]time.Duration, 0, len(events))
	for _, e := range events {
		d, ok := w.latency(e)
		if !ok {
			b.Fatalf("no changelog record of %s covers %s/%d@%d", e.user, benchSource, e.partition, e.offset)
		}
		latencies = append(latencies, d)
	}
	return latencies, rate
}
