package ingesttest

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartRedis runs a real redis-server on a free port for the test, and
// returns its address. make test installs redis-server.
func StartRedis(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (make test installs it): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if rdb.Ping(context.Background()).Err() == nil {
			return addr
		}
	}
	t.Fatal("redis-server did not answer within 10s")
	return ""
}

// CheckRedis checks that Redis holds, for every entity of the fraud views,
// exactly the latest state in the changelog, expiring after the view's TTL.
func CheckRedis(t testing.TB, brokers []string, addr string) {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for _, view := range []string{"user_txn", "merchant_txn"} {
		want := map[string]string{}
		for _, r := range ConsumeAll(t, brokers, "quiver.changelog."+view+".v1") {
			want[string(r.Key)] = string(r.Value)
		}
		prefix := "quiver:" + view + ":v1:"
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != len(want) {
			t.Errorf("%s: %d keys in Redis, %d entities in the changelog", view, len(keys), len(want))
		}
		for entity, state := range want {
			got, err := rdb.Get(ctx, prefix+entity).Result()
			if err != nil || got != state {
				t.Errorf("%s %s: Redis holds a different state (%v)", view, entity, err)
			}
			ttl, err := rdb.PTTL(ctx, prefix+entity).Result()
			if err != nil || ttl <= 719*time.Hour || ttl > 720*time.Hour {
				t.Errorf("%s %s: TTL %v (%v), want the view's 720h", view, entity, ttl, err)
			}
		}
	}
}
