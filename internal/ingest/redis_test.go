package ingest_test

import (
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
