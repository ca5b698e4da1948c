package ingest_test

import (
	"context"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
	onlineredis "github.com/quiver-ml/quiver/store/online/redis"
)

// TestIngestRedis runs ingest with Redis as the shared online store against
// a real redis-server: the same results, and Redis holds each entity's
// latest state with the view's TTL.
func TestIngestRedis(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(6, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns)
	off, offlineRoot := newOffline(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, Redis: rdb, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, defs, txns, offlineRoot)
	ingesttest.CheckRedis(t, brokers, addr)
}

// TestRedisSeeded: an ingest moved to Redis writes the states it computed
// before to Redis (once per changelog partition, as Redis records), not only
// those of entities with new events; a Redis that lost its data is written
// again at the next start.
func TestRedisSeeded(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(6, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns)
	off, _ := newOffline(t)
	dataDir := t.TempDir()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: dataDir, Offline: off, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()

	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	// Ingest with Redis until every partition of both views is seeded: no
	// event comes meanwhile.
	withRedis := func() {
		t.Helper()
		stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: dataDir, Offline: off, Redis: rdb, MaxBatch: 500})
		defer stop()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			keys, err := rdb.Keys(ctx, "quiver:_seeded:*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) == 2*partitions {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("seeded markers %v after a minute, want one per view and partition", keys)
			}
		}
	}
	withRedis()
	ingesttest.CheckRedis(t, brokers, addr)

	if err := rdb.FlushAll(ctx).Err(); err != nil { // Redis lost its data
		t.Fatal(err)
	}
	withRedis()
	ingesttest.CheckRedis(t, brokers, addr)
}

// waitSeeded waits until serve's store over Redis (at addrs) is ready: every
// partition of both views seeded.
func waitSeeded(t *testing.T, addrs ...string) {
	t.Helper()
	s := onlineredis.New(redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs}), "quiver",
		[]online.Table{{View: "user_txn", Version: 1}, {View: "merchant_txn", Version: 1}})
	defer s.Close()
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = s.Ready(context.Background()); err == nil {
			return
		}
	}
	t.Fatalf("Redis not seeded after a minute: %v", err)
}

// seeds returns quiver_ingest_redis_seeds_total by reason and view.
func seeds(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range gather(t, reg, "quiver_ingest_redis_seeds_total") {
		out[s.labels["reason"]+" "+s.labels["view"]] = s.value
	}
	return out
}

// series is a metric's series: its labels and its value.
type series struct {
	labels map[string]string
	value  float64
}

// gather returns the series of the counter or gauge name.
func gather(t *testing.T, reg prometheus.Gatherer, name string) []series {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := series{labels: map[string]string{}, value: m.GetCounter().GetValue() + m.GetGauge().GetValue()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// TestRedisFlushedWhileRunning: Redis losing its data (FLUSHALL) while
// ingest runs is noticed and filled again from the changelog, with events
// coming meanwhile; Redis then holds exactly the changelog's states, which
// are the engine's from scratch, and no event is lost or counted twice.
func TestRedisFlushedWhileRunning(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(8, 6000)
	ingesttest.Produce(t, brokers, "transactions", txns[:3000])
	off, offlineRoot := newOffline(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, Redis: rdb, MaxBatch: 500, Registerer: reg})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, addr)

	// Reseeded states live the view's TTL from when they were written,
	// not from the reseed.
	keys, err := rdb.Keys(context.Background(), "quiver:user_txn:v1:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no user_txn states in Redis (%v)", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitSeeded(t, addr)
	if ttl, err := rdb.PTTL(context.Background(), keys[0]).Result(); err != nil || ttl > 720*time.Hour-1500*time.Millisecond {
		t.Errorf("%s reseeded with TTL %v (%v), want under 720h less the 1.5 s since its write", keys[0], ttl, err)
	}
	ingesttest.Produce(t, brokers, "transactions", txns[3000:])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, addr)
	stop()
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, defs, txns, offlineRoot)
	ingesttest.CheckRedis(t, brokers, addr)
	want := map[string]float64{}
	for _, k := range []string{"assigned user_txn@1", "assigned merchant_txn@1", "lost user_txn@1", "lost merchant_txn@1"} {
		want[k] = partitions // each partition of each view once
	}
	if got := seeds(t, reg); !maps.Equal(got, want) {
		t.Errorf("quiver_ingest_redis_seeds_total %v, want %v", got, want)
	}
}

// TestRedisRestartedWhileRunning: a Redis that restarts while ingest runs
// and loads an older snapshot, markers included, holds stale states; ingest
// notices the new run ID and writes the changelog's states again.
func TestRedisRestartedWhileRunning(t *testing.T) {
	srv := ingesttest.StartRedisServer(t)
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(9, 6000)
	ingesttest.Produce(t, brokers, "transactions", txns[:3000])
	off, offlineRoot := newOffline(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, Redis: rdb, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, srv.Addr)
	if err := rdb.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	ingesttest.Produce(t, brokers, "transactions", txns[3000:])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)

	srv.Restart() // back with the snapshot: the first half's states
	waitSeeded(t, srv.Addr)
	stop()
	ingesttest.Check(t, brokers, defs, txns, offlineRoot)
	ingesttest.CheckRedis(t, brokers, srv.Addr)
}

// TestRedisClusterMasterFlushed: on a Redis Cluster, one master losing its
// data is noticed whichever master holds the markers' own slots, and the
// states it held are written again.
func TestRedisClusterMasterFlushed(t *testing.T) {
	addrs := ingesttest.StartRedisCluster(t, 3)
	brokers := cluster(t)
	defs := loadDefs(t)
	txns := ingesttest.Stream(10, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Redis: rdb, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, addrs...)
	ingesttest.CheckRedis(t, brokers, addrs...)
	for _, addr := range addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		err := node.FlushAll(context.Background()).Err()
		node.Close()
		if err != nil {
			t.Fatal(err)
		}
		waitSeeded(t, addrs...)
		ingesttest.CheckRedis(t, brokers, addrs...)
	}
	stop()
}

// TestRedisDownWhileWriting: a Redis down for a few seconds while ingest
// writes a batch (a restart, a failover) holds every state once it is
// back: ingest tries the write again rather than stop.
func TestRedisDownWhileWriting(t *testing.T) {
	srv := ingesttest.StartRedisServer(t)
	brokers := cluster(t)
	txns := ingesttest.Stream(11, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns[:1500])
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	stop := runIngest(t, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Redis: rdb, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, srv.Addr)
	srv.Kill()
	ingesttest.Produce(t, brokers, "transactions", txns[1500:])
	time.Sleep(3 * time.Second) // the batch's writes fail meanwhile
	srv.Restart()
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, srv.Addr)
	stop() // fails the test if Run stopped with an error
	ingesttest.CheckRedis(t, brokers, srv.Addr)
}

// TestRedisSentinelFailover: through Redis Sentinels, ingest follows a
// failover to the replica. The new master is another run, so ingest writes
// it every state again, and it holds the changelog's states once ingest
// has caught up with what came after.
func TestRedisSentinelFailover(t *testing.T) {
	sentinel, master, replica := ingesttest.StartRedisSentinel(t)
	brokers := cluster(t)
	txns := ingesttest.Stream(12, 3000)
	ingesttest.Produce(t, brokers, "transactions", txns[:1500])
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: ingesttest.SentinelMaster, SentinelAddrs: []string{sentinel}})
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	stop := runIngest(t, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Redis: rdb, MaxBatch: 500, Registerer: reg})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, master.Addr)

	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	defer sc.Close()
	// A Sentinel refuses (NOGOODSLAVE) until it has had the replica's own
	// INFO, moments after it found the replica.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := sc.Failover(ctx, ingesttest.SentinelMaster).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		addr, err := sc.GetMasterAddrByName(ctx, ingesttest.SentinelMaster).Result()
		if err == nil && addr[0]+":"+addr[1] == replica.Addr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica is not the master 30 s after SENTINEL FAILOVER: %v %v", addr, err)
		}
	}
	ingesttest.Produce(t, brokers, "transactions", txns[1500:])
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitSeeded(t, replica.Addr)
	stop()
	ingesttest.CheckRedis(t, brokers, replica.Addr)
	if got := seeds(t, reg); got["lost user_txn@1"] != partitions {
		t.Errorf("quiver_ingest_redis_seeds_total %v, want every user_txn partition written again after the failover", got)
	}
}

// TestFailedFlushStopsRun: a batch whose flush fails (Redis not answering
// for longer than WriteRetry) stops Run with the error, for the restart to
// replay it, even when no record follows to wake the poll.
func TestFailedFlushStopsRun(t *testing.T) {
	srv := ingesttest.StartRedisServer(t)
	brokers := cluster(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond})
	defer rdb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Definitions: loadDefs(t), Brokers: brokers, DataDir: t.TempDir(), Redis: rdb,
		WriteRetry: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("a", "u1", "2026-11-20T10:00:00Z")})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	ingesttest.Produce(t, brokers, "transactions", []ingesttest.Txn{txnAt("b", "u2", "2026-11-20T10:01:00Z")})
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run returned no error after a failed flush")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still running 15 s after its flush failed, with no record to poll")
	}
}
