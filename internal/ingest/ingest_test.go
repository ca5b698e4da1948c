package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
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

// runIngest runs an ingester until the returned stop is called.
func runIngest(t testing.TB, cfg ingest.Config) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
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

func newOffline(t testing.TB) (*offline.Dir, string) {
	t.Helper()
	root := t.TempDir()
	off, err := offline.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return off, root
}

// TestIngest runs the ingester on a stream with bad records among the good:
// every bad record, and nothing else, is in the DLQ with its reason; every
// state in the changelog is what the engine computes from the good ones;
// the offline logs hold each accepted event once.
func TestIngest(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(1, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns)
	off, root := newOffline(t)
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, defs, txns, root)
}

// TestIngestConsuming: an ingester says it is consuming (its /readyz) only
// once it has joined its group and prepared its partitions.
func TestIngestConsuming(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if in.Consuming() {
		t.Fatal("consuming before Run joined the group")
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); !in.Consuming(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not consuming 30 s after Run started")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDataDirInUse: an instance on a data directory another process is
// using is refused, saying so. The test runs itself again as that process.
func TestDataDirInUse(t *testing.T) {
	if dir := os.Getenv("QUIVER_TEST_HOLD_STATE_STORE"); dir != "" {
		db, err := pebble.Open(dir, &pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("holding")
		io.Copy(io.Discard, os.Stdin) // until the parent closes it
		db.Close()
		return
	}
	dataDir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^TestDataDirInUse$")
	holder.Env = append(os.Environ(), "QUIVER_TEST_HOLD_STATE_STORE="+filepath.Join(dataDir, "ingest"))
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		holder.Wait()
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "holding\n" {
		t.Fatalf("the process holding the store said %q, %v", line, err)
	}
	_, err = ingest.New(context.Background(), ingest.Config{Definitions: loadDefs(t), Brokers: cluster(t), DataDir: dataDir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process (each ingest instance needs a --data-dir of its own)") {
		t.Fatalf("an instance on a data directory in use: %v, want an error saying so", err)
	}
}

// TestRefusedWarnings: events that every view refuses (a null amount fails
// the fraud views' filter) and events that one view refuses (a null
// merchant_id: the user's views take them) are each counted, by reason, and
// warned about once per view and reason, not once per event.
func TestRefusedWarnings(t *testing.T) {
	brokers := cluster(t)
	var txns []ingesttest.Txn
	for i := range 400 {
		at := ingesttest.Start.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		amount, merchant := "null", `"m1"`
		if i >= 300 {
			amount, merchant = "5.0", "null"
		}
		txns = append(txns, ingesttest.Txn{Key: "u1", Value: fmt.Sprintf(`{"txn_id":"t%d","user_id":"u1","merchant_id":%s,"amount":%s,"ts":%q}`, i, merchant, amount, at), Valid: true})
	}
	ingesttest.Produce(t, brokers, "transactions", txns)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	stop := runIngest(t, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Registerer: reg, MaxBatch: 50,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	refused, applied := counters(t, reg, "quiver_ingest_events_refused_total"), counters(t, reg, "quiver_ingest_events_applied_total")
	want := map[string]float64{
		"apply_error user_txn@1": 300, "apply_error merchant_txn@1": 300,
		"missing_entity_key user_txn@1": 0, "missing_entity_key merchant_txn@1": 100,
	}
	if !maps.Equal(refused, want) {
		t.Errorf("quiver_ingest_events_refused_total %v, want %v", refused, want)
	}
	if want := map[string]float64{"user_txn@1": 100, "merchant_txn@1": 0}; !maps.Equal(applied, want) {
		t.Errorf("quiver_ingest_events_applied_total %v, want %v", applied, want)
	}
	if n := strings.Count(logs.String(), "event not applied"); n != 3 {
		t.Errorf("%d warnings of events not applied, want one per view and reason:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "view=merchant_txn@1 reason=missing_entity_key topic=transactions") {
		t.Errorf("no warning names the view and reason of a null join key:\n%s", logs.String())
	}
}

// TestSkippedRepartitioned: repartitioned records that no view here can
// apply (another deployment's, sharing the topic prefix; without origin
// headers; not decoding) are counted by reason and warned about once per
// reason, not once per record, and the good records around them are
// applied.
func TestSkippedRepartitioned(t *testing.T) {
	brokers := cluster(t)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	stop := runIngest(t, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Registerer: reg, MaxBatch: 50,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	txn := func(i int) ingesttest.Txn {
		at := ingesttest.Start.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		return ingesttest.Txn{Key: "u1", Value: fmt.Sprintf(`{"txn_id":"t%d","user_id":"u1","merchant_id":"m1","amount":5.0,"ts":%q}`, i, at)}
	}
	var good []ingesttest.Txn
	for i := range 100 {
		good = append(good, txn(i))
	}
	ingesttest.Produce(t, brokers, "transactions", good[:50])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute) // the repartition topics exist

	var recs []*kgo.Record
	header := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	for i := range 300 {
		r := &kgo.Record{Topic: "quiver.repartition.user", Key: []byte("u1"), Value: []byte(txn(1000 + i).Value)}
		switch {
		case i < 150: // another deployment's source
			r.Headers = []kgo.RecordHeader{header("quiver-source", "payments"), header("quiver-topic", "payments"),
				header("quiver-partition", "0"), header("quiver-offset", strconv.Itoa(i))}
		case i < 250: // no origin
		default:
			r.Value = []byte(`{"amount": "five"}`)
			r.Headers = []kgo.RecordHeader{header("quiver-source", "transactions"), header("quiver-topic", "transactions"),
				header("quiver-partition", "0"), header("quiver-offset", strconv.Itoa(1000+i))}
		}
		recs = append(recs, r)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ingesttest.Produce(t, brokers, "transactions", good[50:])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()

	want := map[string]float64{"unknown_source": 150, "no_origin": 100, "undecodable": 50}
	if skipped := counters(t, reg, "quiver_ingest_repartition_skipped_total"); !maps.Equal(skipped, want) {
		t.Errorf("quiver_ingest_repartition_skipped_total %v, want %v", skipped, want)
	}
	if n := counters(t, reg, "quiver_ingest_events_applied_total")["user_txn@1"]; n != 100 {
		t.Errorf("user_txn@1 applied %v events, want the 100 good ones", n)
	}
	for _, msg := range []string{"does another deployment share --topic-prefix?", "without valid origin headers", "does not decode"} {
		if n := strings.Count(logs.String(), msg); n != 1 {
			t.Errorf("%d warnings %q, want one:\n%s", n, msg, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "source=payments source_topic=payments") {
		t.Errorf("the warning of another deployment's records does not name their source:\n%s", logs.String())
	}
}

// counters returns the values of the counter name in reg, by their labels'
// values joined with spaces.
func counters(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			values[strings.Join(labels, " ")] = m.GetCounter().GetValue()
		}
	}
	return values
}

// TestFutureEvents: an event far ahead of its record's timestamp moves its
// partition's watermark, and the events after it are late, unless
// MaxFutureSkew dead-letters it; so does one whose record is stamped as far
// ahead of the clock, by a producer whose clock is wrong.
func TestFutureEvents(t *testing.T) {
	txn := func(id string, at, produced time.Time) ingesttest.Txn {
		return ingesttest.Txn{Key: "u1", Produced: produced, Valid: true,
			Value: fmt.Sprintf(`{"txn_id":%q,"user_id":"u1","merchant_id":"m1","amount":2.5,"ts":%q}`, id, at.Format(time.RFC3339))}
	}
	t0 := ingesttest.Start
	for _, skew := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint("skew=", skew), func(t *testing.T) {
			txns := []ingesttest.Txn{
				txn("a", t0, t0),
				txn("b", t0.Add(50*time.Minute), t0),       // within the skew
				txn("future", t0.Add(30*24*time.Hour), t0), // a producer's clock a month ahead
				txn("c", t0.Add(2*time.Hour), t0.Add(2*time.Hour)),
				txn("wrong clock", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)),
				txn("d", t0.Add(3*time.Hour), t0.Add(3*time.Hour)),
			}
			if skew == 0 {
				txns[3].Valid, txns[3].Reason = false, features.ReasonLate
				txns[5].Valid, txns[5].Reason = false, features.ReasonLate
			} else {
				txns[2].Valid, txns[2].Reason = false, ingest.ReasonFuture
				txns[4].Valid, txns[4].Reason = false, ingest.ReasonFuture
			}
			brokers := cluster(t)
			ingesttest.Produce(t, brokers, "transactions", txns)
			defs := loadDefs(t)
			off, root := newOffline(t)
			stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxFutureSkew: skew})
			ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
			stop()
			ingesttest.CheckDLQ(t, brokers, txns)
			ingesttest.Check(t, brokers, defs, txns, root)
		})
	}
}

// TestIngestWaitsForSourceTopic: started before its source topic exists,
// ingest waits for it, then consumes it.
func TestIngestWaitsForSourceTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	defs := loadDefs(t)
	txns := ingesttest.Stream(2, 500)
	go func() {
		time.Sleep(1500 * time.Millisecond) // ingest is waiting by then
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, -1, nil, "transactions"); err != nil {
			t.Error(err)
		}
	}()
	off, root := newOffline(t)
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off})
	ingesttest.Produce(t, brokers, "transactions", txns)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	ingesttest.Check(t, brokers, defs, txns, root)
}

// TestIngestStopsWaitingForSourceTopic: stopped while it waits for its
// source topic, ingest says it was stopped (a clean exit), not that the
// topic is missing.
func TestIngestStopsWaitingForSourceTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: loadDefs(t), Brokers: c.ListenAddrs(), DataDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})
	if in != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New stopped while waiting for the source topic: %v; want the context's error", err)
	}
}

// TestIngestTwoInstances runs two ingesters in one group, started while
// events arrive: the result is the same as one ingester's.
func TestIngestTwoInstances(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(2, 6000)
	off, root := newOffline(t)
	third := len(txns) / 3
	ingesttest.Produce(t, brokers, "transactions", txns[:third])
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	stop1 := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 200, Registerer: reg1})
	ingesttest.Produce(t, brokers, "transactions", txns[third:2*third])
	stop2 := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 200, Registerer: reg2})
	ingesttest.Produce(t, brokers, "transactions", txns[2*third:])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	// A partition's lag is its owner's to report: one that moved to the
	// second instance would keep the first's last value, frozen, for the
	// lag alert to fire on. Between them, once the group has settled, they
	// report the lag of as many partitions of each topic as each says it
	// has: the alert on partitions no instance owns compares the two.
	report := func() (lagged, perTopic map[string]int, partitions map[string]float64) {
		lagged, perTopic, partitions = map[string]int{}, map[string]int{}, map[string]float64{}
		for _, reg := range []*prometheus.Registry{reg1, reg2} {
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					topic := ""
					for _, l := range m.GetLabel() {
						if l.GetName() == "topic" {
							topic = l.GetValue()
						}
					}
					switch mf.GetName() {
					case "quiver_ingest_consumer_lag_records":
						lagged[fmt.Sprint(m.GetLabel())]++
						perTopic[topic]++
					case "quiver_ingest_topic_partitions":
						if n, ok := partitions[topic]; ok && n != m.GetGauge().GetValue() {
							t.Errorf("the instances say %s has %v and %v partitions", topic, n, m.GetGauge().GetValue())
						}
						partitions[topic] = m.GetGauge().GetValue()
					}
				}
			}
		}
		return lagged, perTopic, partitions
	}
	lagged, perTopic, partitions := report()
	settled := func() bool {
		for topic, n := range partitions {
			if float64(perTopic[topic]) != n {
				return false
			}
		}
		return len(partitions) == 3
	}
	for deadline := time.Now().Add(20 * time.Second); !settled() && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		lagged, perTopic, partitions = report()
	}
	for series, n := range lagged {
		if n > 1 {
			t.Errorf("both instances report the lag of %s", series)
		}
	}
	if len(partitions) != 3 {
		t.Errorf("partitions of %d topics, want 3 (transactions and two repartition topics): %v", len(partitions), partitions)
	}
	for topic, n := range partitions {
		if float64(perTopic[topic]) != n {
			t.Errorf("the lag of %d partitions of %s reported, want all %v", perTopic[topic], topic, n)
		}
	}
	// Every DLQ reason and stage counts from 0, seen or not: increase()
	// sees the first.
	for name, want := range map[string]int{"quiver_ingest_dlq_records_total": 7, "quiver_ingest_records_consumed_total": 2} {
		if n, err := testutil.GatherAndCount(reg1, name); err != nil || n != want {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, want)
		}
	}
	stop1()
	stop2()
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, defs, txns, root)
}
