package ingest_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// TestLagWhileStalled: an ingest that cannot make its batches durable (the
// broker refuses its writes) stops fetching, but its lag still grows with
// every record produced, and its committed offset stays put, which is what
// the stall alert looks for; once the broker takes writes again it catches
// up and its lag is back to zero.
func TestLagWhileStalled(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "transactions"), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	source := topicID(t, brokers, "transactions")
	var refuse atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		if !refuse.Load() || len(r.Topics) > 0 && (r.Topics[0].Topic == "transactions" || r.Topics[0].TopicID == source) {
			return nil, nil, false
		}
		// Every write of ingest's own: re-keyed records, states, dead letters.
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() {
		// Run drains the batch in hand before it returns.
		refuse.Store(false)
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		in.Close()
	}()

	source1 := ingesttest.Stream(1, 300)
	ingesttest.Produce(t, brokers, "transactions", source1)
	waitGauges(t, reg, 0, len(source1))

	refuse.Store(true)
	// In rounds: the first batch is stuck being made durable, the second
	// waits for it, and nothing after is fetched for processing.
	var stuck int
	for seed := range uint64(3) {
		txns := ingesttest.Stream(10+seed, 100)
		ingesttest.Produce(t, brokers, "transactions", txns)
		stuck += len(txns)
		time.Sleep(500 * time.Millisecond)
	}
	waitGauges(t, reg, stuck, len(source1))

	refuse.Store(false)
	waitGauges(t, reg, 0, len(source1)+stuck)
}

// topicID returns a topic's ID, which recent produce requests name it by.
func topicID(t *testing.T, brokers []string, topic string) [16]byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return details[topic].ID
}

// waitGauges waits until the source topic's lag and committed offsets,
// summed over its partitions, are as given, for up to three times the
// interval at which ingest lists end offsets.
func waitGauges(t *testing.T, reg prometheus.Gatherer, lag, committed int) {
	t.Helper()
	var gotLag, gotCommitted float64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		gotLag = sumGauge(t, reg, "quiver_ingest_consumer_lag_records", "transactions")
		gotCommitted = sumGauge(t, reg, "quiver_ingest_consumer_committed_offset", "transactions")
		if gotLag == float64(lag) && gotCommitted == float64(committed) {
			return
		}
	}
	t.Fatalf("source lag %v and committed offsets %v, want %d and %d", gotLag, gotCommitted, lag, committed)
}

// sumGauge sums a gauge's series of one topic.
func sumGauge(t *testing.T, reg prometheus.Gatherer, name, topic string) float64 {
	t.Helper()
	var sum float64
	for _, s := range gather(t, reg, name) {
		if s.labels["topic"] == topic {
			sum += s.value
		}
	}
	return sum
}
