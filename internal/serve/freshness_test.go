package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/pebble"
)

const (
	freshnessRate  = 10_000           // events per second
	freshnessFor   = 10 * time.Second // of paced load
	freshnessProbe = 50               // one event in this many is a probe
	freshnessPoll  = 5 * time.Millisecond
)

// probe is an event whose visibility is measured: it is visible once its
// user's lifetime count reaches n.
type probe struct {
	user string
	n    int64
	at   time.Time // handed to the producer
}

// BenchmarkServeFreshness measures how long an event takes to be visible
// over HTTP under load: fraudgen transactions stamped with the current time
// are produced at freshnessRate for freshnessFor into a running Ingester
// (offline logs on);
// a Pebble replica tails the changelog and serve answers over TCP. One event
// in freshnessProbe is a probe: a poller asks serve, every freshnessPoll,
// for the lifetime transaction count of every user with a pending probe,
// and a probe's latency runs from when its event was handed to the
// producer until a response shows the count including it.
func BenchmarkServeFreshness(b *testing.B) {
	defs, err := features.Load("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var latencies []time.Duration
	for range b.N {
		latencies = append(latencies, freshnessRun(b, defs)...)
	}
	slices.Sort(latencies)
	q := func(f float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(f*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(float64(len(latencies)), "probes")
}

func freshnessRun(b *testing.B, defs *features.Definitions) []time.Duration {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "transactions"), kfake.DefaultNumPartitions(4))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	off, err := offline.NewDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	in, err := ingest.New(ctx, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: b.TempDir(), Offline: off})
	if err != nil {
		b.Fatal(err)
	}
	ingested := make(chan error, 1)
	go func() { ingested <- in.Run(ctx) }()
	defer func() { cancel(); <-ingested; in.Close() }()

	replica, err := pebble.Open(pebble.Config{Brokers: brokers, Tables: []online.Table{{View: "user_txn", Version: 1}}, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	replicated := make(chan struct{})
	go func() { replica.Run(ctx); close(replicated) }()
	defer func() { cancel(); <-replicated; replica.Close() }()
	srv, err := serve.New(serve.Config{Definitions: defs, Store: replica})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/get-online-features"

	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"))
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close()
	g, err := fraudgen.New(fraudgen.Config{Seed: 2, Users: 1000, Merchants: 200})
	if err != nil {
		b.Fatal(err)
	}
	counts := map[string]int64{} // per user: events produced that pass the view's filter
	var mu sync.Mutex
	var pending []probe
	var latencies []time.Duration
	produce := func(isProbe bool) {
		ev := g.Next()
		ev.Time = time.Now().UTC()
		if ev.Amount > 0 {
			counts[ev.UserID]++
		}
		if isProbe && ev.Amount > 0 {
			mu.Lock()
			pending = append(pending, probe{user: ev.UserID, n: counts[ev.UserID], at: time.Now()})
			mu.Unlock()
		}
		producer.Produce(ctx, &kgo.Record{Key: ev.Key(), Value: ev.JSON()}, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				b.Errorf("produce: %v", err)
			}
		})
	}

	// Warm up until serve is ready and shows a probe: the group has joined
	// and every topic exists.
	for replica.Ready(ctx) != nil || len(pending) > 0 || len(counts) == 0 {
		for range 100 {
			produce(len(counts) == 0)
		}
		time.Sleep(20 * time.Millisecond)
		if replica.Ready(ctx) == nil {
			poll(b, url, &mu, &pending, nil)
		}
	}

	polling, stopPolling := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for polling.Err() == nil {
			poll(b, url, &mu, &pending, &latencies)
			time.Sleep(freshnessPoll)
		}
	}()
	total := int(freshnessRate * freshnessFor.Seconds())
	start := time.Now()
	for n := 0; n < total; {
		due := min(total, int(time.Since(start).Seconds()*freshnessRate))
		for ; n < due; n++ {
			produce(n%freshnessProbe == 0)
		}
		time.Sleep(time.Millisecond)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d probes not visible 30s after the load ended", left)
		}
	}
	stopPolling()
	<-polled
	return latencies
}

// poll looks up every user with a pending probe and records the latency of
// each probe the response shows; latencies nil drops them (warm-up).
func poll(b *testing.B, url string, mu *sync.Mutex, pending *[]probe, latencies *[]time.Duration) {
	mu.Lock()
	var users []string
	for _, p := range *pending {
		if !slices.Contains(users, p.user) {
			users = append(users, p.user)
		}
	}
	mu.Unlock()
	if len(users) == 0 {
		return
	}
	body := fmt.Sprintf(`{"features": ["user_txn@1:txn_count"], "entities": {"user_id": ["%s"]}}`, strings.Join(users, `","`))
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	var r struct {
		Results []struct{ Values []any } `json:"results"`
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("lookup: %d %v", resp.StatusCode, err)
	}
	seen := time.Now()
	count := map[string]int64{}
	for i, u := range users {
		if v, ok := r.Results[1].Values[i].(float64); ok {
			count[u] = int64(v)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	kept := (*pending)[:0]
	for _, p := range *pending {
		if c, ok := count[p.user]; ok && c >= p.n {
			if latencies != nil {
				*latencies = append(*latencies, seen.Sub(p.at))
			}
			continue
		}
		kept = append(kept, p)
	}
	*pending = kept
}
