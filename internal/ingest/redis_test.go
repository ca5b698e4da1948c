package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
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
