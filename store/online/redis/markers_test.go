package redis_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
)

var (
	userTxn  = online.Table{View: "user_txn", Version: 1}
	merchTxn = online.Table{View: "merchant_txn", Version: 1}
)

// seed writes the markers of every partition of tables, as ingest does
// around writing a partition's states.
func seed(t *testing.T, rdb goredis.UniversalClient, partitions int32, tables ...online.Table) {
	t.Helper()
	ctx := context.Background()
	m, err := redis.LoadMarkers(ctx, rdb, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		for p := range partitions {
			if err := m.Begin(ctx, table, p, partitions); err != nil {
				t.Fatal(err)
			}
			if err := m.Done(ctx, table, p, redis.Marker{Partitions: partitions}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// notReady fails unless s is not ready because a partition is not seeded,
// with why containing want.
func notReady(t *testing.T, s online.Store, want string) {
	t.Helper()
	err := s.Ready(context.Background())
	if !errors.Is(err, redis.ErrNotSeeded) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Ready = %v, want %v saying %q", err, redis.ErrNotSeeded, want)
	}
}

func ready(t *testing.T, s online.Store) {
	t.Helper()
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// TestReadySeeded: the store is ready only while Redis holds every
// partition of every table: after ingest seeded them all, and not after
// FLUSHALL, nor after a restart that brought back an older snapshot with
// the markers in it.
func TestReadySeeded(t *testing.T) {
	srv := ingesttest.StartRedisServer(t)
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer rdb.Close()
	s := redis.New(goredis.NewClient(&goredis.Options{Addr: srv.Addr}), "test", []online.Table{userTxn, merchTxn})
	defer s.Close()

	notReady(t, s, "user_txn@1 partition 0: no marker")
	m, err := redis.LoadMarkers(ctx, rdb, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []online.Table{userTxn, merchTxn} {
		for p := range int32(2) {
			if err := m.Begin(ctx, table, p, 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	notReady(t, s, "user_txn@1 partition 0: the seed has not finished")
	for _, table := range []online.Table{userTxn, merchTxn} {
		if err := m.Done(ctx, table, 0, redis.Marker{Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	notReady(t, s, "user_txn@1 partition 1: the seed has not finished")
	for _, table := range []online.Table{userTxn, merchTxn} {
		if err := m.Done(ctx, table, 1, redis.Marker{Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	ready(t, s)

	if err := rdb.Del(ctx, online.RedisSeededKey("test", merchTxn, 1)).Err(); err != nil {
		t.Fatal(err)
	}
	notReady(t, s, "merchant_txn@1 partition 1: no marker")
	// As an older ingest wrote it: the time, no run ID.
	if err := rdb.Set(ctx, online.RedisSeededKey("test", merchTxn, 1), "2026-11-20T00:00:00Z", 0).Err(); err != nil {
		t.Fatal(err)
	}
	notReady(t, s, "merchant_txn@1 partition 1: the seed has not finished (or an older ingest wrote the marker)")
	seed(t, rdb, 2, merchTxn)
	ready(t, s)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	notReady(t, s, "user_txn@1 partition 0: no marker")

	seed(t, rdb, 2, userTxn, merchTxn)
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	if n, err := rdb.Exists(ctx, online.RedisSeededKey("test", userTxn, 0)).Result(); err != nil || n != 1 {
		t.Fatalf("the restarted Redis has %d markers (%v), want the saved one", n, err)
	}
	notReady(t, s, "Redis restarted or failed over since")
	seed(t, rdb, 2, userTxn, merchTxn)
	ready(t, s)
}

// TestMarkerLostWhileSeeding: a marker whose partition Redis lost data of
// while it was being seeded does not say seeded once the seed is done.
func TestMarkerLostWhileSeeding(t *testing.T) {
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: ingesttest.StartRedis(t)})
	defer rdb.Close()
	m, err := redis.LoadMarkers(ctx, rdb, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Begin(ctx, userTxn, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil { // while the states are written
		t.Fatal(err)
	}
	if err := m.Done(ctx, userTxn, 0, redis.Marker{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	unseeded, err := m.Unseeded(ctx, userTxn, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(unseeded[0], redis.ErrNotSeeded) {
		t.Fatalf("Unseeded = %v, want partition 0 not seeded", unseeded)
	}
}

// TestClusterMarkers: on a Redis Cluster each marker has a copy on every
// master, so that any one master losing its data (FLUSHALL there, a restart
// without persistence) makes the store not ready, whichever master holds the
// marker's own key.
func TestClusterMarkers(t *testing.T) {
	ctx := context.Background()
	addrs := ingesttest.StartRedisCluster(t, 3)
	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	s := redis.New(goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs}), "test", []online.Table{userTxn, merchTxn})
	defer s.Close()
	notReady(t, s, "no marker")
	for i, addr := range addrs {
		seed(t, rdb, 4, userTxn, merchTxn)
		ready(t, s)
		var mu sync.Mutex
		perMaster := map[string]int{}
		err := rdb.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			keys, err := c.Keys(ctx, "test:_seeded:*").Result()
			mu.Lock()
			perMaster[c.Options().Addr] = len(keys)
			mu.Unlock()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if perMaster[a] != 2*4 {
				t.Fatalf("markers per master %v, want one copy of each of the 8 on each", perMaster)
			}
		}
		node := goredis.NewClient(&goredis.Options{Addr: addr})
		if err := node.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		node.Close()
		notReady(t, s, "that master lost its data")
		t.Logf("master %d flushed: %v", i, s.Ready(ctx))
	}
}

// TestMarkersErrors: a Redis that does not answer, or answers with an
// error, is named in the error, which serve's readiness and 503s show.
func TestMarkersErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rdb := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = redis.LoadMarkers(ctx, rdb, "test")
	if want := "redis at " + addr + " did not answer INFO server: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LoadMarkers = %v, want an error beginning %q", err, want)
	}
	// A managed Redis may disable INFO.
	noInfo := ingesttest.StartRedisServer(t, "--rename-command", "INFO", "")
	rdb = goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{noInfo.Addr}})
	defer rdb.Close()
	_, err = redis.LoadMarkers(context.Background(), rdb, "test")
	if want := "redis at " + noInfo.Addr + ": INFO server: ERR unknown command 'info'"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LoadMarkers = %v, want an error beginning %q", err, want)
	}
}
