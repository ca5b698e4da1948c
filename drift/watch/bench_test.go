package watch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift/drifttest"
)

// BenchmarkMonitor: predictions per second through the whole drift path
// (Kafka consume over TCP, JSON decode, 10 inputs and the output binned,
// windows scored), beside its ceiling in the same run: consuming the same
// records with a plain franz-go consumer. Joining the group is not timed.
func BenchmarkMonitor(b *testing.B) {
	const n = 200_000
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	dir, defs, prof := drifttest.Repository(b, watchYAML)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "quiver.predictions"); err != nil {
		b.Fatal(err)
	}
	at := time.Now()
	s := drifttest.NewSampler(prof, 3)
	for range n / 10_000 {
		drifttest.Produce(b, cl, "quiver.predictions", s.Predictions(10_000, &at, time.Millisecond))
	}

	b.Run("ceiling=kgo-consume", func(b *testing.B) {
		for range b.N {
			cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("quiver.predictions"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				b.Fatal(err)
			}
			for got := 0; got < n; {
				got += cons.PollFetches(context.Background()).NumRecords()
			}
			cons.Close()
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "predictions/s")
	})
	groups := 0 // each run a fresh consumer group, from the start
	b.Run("monitor", func(b *testing.B) {
		for range b.N {
			b.StopTimer() // joining the group is not processing
			groups++
			m, err := New(context.Background(), Config{Brokers: brokers, Models: dir, Definitions: defs,
				GroupID: fmt.Sprint("bench-", groups)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			for testutil.ToFloat64(m.m.predictions.WithLabelValues("fraud", "1")) == 0 {
				time.Sleep(time.Millisecond)
			}
			b.StartTimer()
			for testutil.ToFloat64(m.m.predictions.WithLabelValues("fraud", "1")) < n {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "predictions/s")
		b.ReportMetric(float64(b.N*n*11)/b.Elapsed().Seconds(), "values/s")
	})
}
