package redis_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
	"github.com/quiver-ml/quiver/store/online/storetest"
)

// TestStore runs the shared suite on a single Redis, with and without the
// client-side cache, and on a Redis Cluster, which reads several keys
// another way.
func TestStore(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	cluster := ingesttest.StartRedisCluster(t, 3)
	for _, c := range []struct {
		name   string
		addrs  []string
		cached bool
	}{{"plain", []string{addr}, false}, {"client-cache", []string{addr}, true}, {"cluster", cluster, false}} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, records []online.Record) online.Store {
				opts := &goredis.UniversalOptions{Addrs: c.addrs, IsClusterMode: len(c.addrs) > 1}
				writer := goredis.NewUniversalClient(opts)
				defer writer.Close()
				ctx := context.Background()
				flush := func(ctx context.Context, rdb *goredis.Client) error { return rdb.FlushAll(ctx).Err() }
				var err error
				if cc, ok := writer.(*goredis.ClusterClient); ok {
					err = cc.ForEachMaster(ctx, flush)
				} else {
					err = flush(ctx, writer.(*goredis.Client))
				}
				if err != nil {
					t.Fatal(err)
				}
				var tables []online.Table
				for _, r := range records {
					// As ingest writes them.
					if err := writer.Set(ctx, online.RedisKey("test", r.Table, r.Key), r.Value, 0).Err(); err != nil {
						t.Fatal(err)
					}
					if !slices.Contains(tables, r.Table) {
						tables = append(tables, r.Table)
					}
				}
				ingesttest.MarkSeeded(t, writer, "test", tables...)
				if c.cached {
					redis.CacheOptions(opts, 64<<20)
				}
				return redis.New(goredis.NewUniversalClient(opts), "test", tables)
			})
		})
	}
}

// With client-side caching, a record another client (ingest) changes is
// seen changed through the invalidation Redis sends, not by expiry: the
// entries here would otherwise be kept for an hour.
func TestClientCacheInvalidation(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	ctx := context.Background()
	writer := goredis.NewClient(&goredis.Options{Addr: addr})
	defer writer.Close()
	table := online.Table{View: "user_txn", Version: 1}
	key := online.RedisKey("test", table, "u1")
	if err := writer.Set(ctx, key, "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	opts := &goredis.UniversalOptions{Addrs: []string{addr}, Protocol: 3,
		ClientSideCacheConfig: &goredis.ClientSideCacheConfig{MaxMemoryBytes: 1 << 20, MaxStaleness: time.Hour}}
	s := redis.New(goredis.NewUniversalClient(opts), "test", []online.Table{table})
	defer s.Close()
	get := func() string {
		got, err := storetest.GetAll(ctx, s, table, []string{"u1"})
		if err != nil {
			t.Fatal(err)
		}
		return string(got[0])
	}
	for range 3 {
		if v := get(); v != "v1" {
			t.Fatalf("got %q, want v1", v)
		}
	}
	if n := serverGets(t, writer); n != 1 {
		t.Fatalf("Redis answered %d GETs for 3 reads of one key, want 1: the client cache is not in use", n)
	}
	if err := writer.Set(ctx, key, "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for get() != "v2" {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the cached record was not invalidated within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("change visible after %v", time.Since(start))
	if err := writer.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	for start = time.Now(); get() != ""; time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a deleted record is still served after 5s")
		}
	}
}

// serverGets returns how many GETs Redis has answered.
func serverGets(t *testing.T, c *goredis.Client) int {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(info, "cmdstat_get:calls=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	return n
}
