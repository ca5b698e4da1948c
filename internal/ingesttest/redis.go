package ingesttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/tlstest"
	"github.com/quiver-ml/quiver/store/online"
	onlineredis "github.com/quiver-ml/quiver/store/online/redis"
)

// StartRedis runs a real redis-server on a free port for the test, and
// returns its address. make test installs redis-server.
func StartRedis(t testing.TB) string { return StartRedisServer(t).Addr }

// RedisServer is a redis-server a test runs. It saves nothing unless told
// to (SAVE), and a restart loads what it saved last, as a Redis restarted
// from an old snapshot does.
type RedisServer struct {
	Addr string
	t    testing.TB
	args []string
	ping *redis.Options // how start pings it
	log  string
	cmd  *exec.Cmd
}

// StartRedisServer runs a redis-server on a free port for the test, with
// extra arguments, and waits until it answers.
func StartRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	port := strconv.Itoa(freeport.Get(t))
	return startRedisServer(t, port, &redis.Options{}, append([]string{"--port", port}, args...))
}

// StartSecureRedisServer runs a redis-server on a free port that takes only
// TLS connections, with the certificate of files, from clients with a
// certificate the authority of files signed, and requires password.
func StartSecureRedisServer(t testing.TB, files tlstest.Files, password string) *RedisServer {
	t.Helper()
	port := strconv.Itoa(freeport.Get(t))
	return startRedisServer(t, port, &redis.Options{Password: password, TLSConfig: files.Client(t)},
		[]string{"--port", "0", "--tls-port", port, "--tls-cert-file", files.Cert, "--tls-key-file", files.Key,
			"--tls-ca-cert-file", files.CA, "--tls-auth-clients", "yes", "--requirepass", password})
}

func startRedisServer(t testing.TB, port string, ping *redis.Options, args []string) *RedisServer {
	t.Helper()
	dir := t.TempDir()
	s := &RedisServer{Addr: "127.0.0.1:" + port, t: t, ping: ping, log: filepath.Join(dir, "redis.log")}
	s.args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", s.log}, args...)
	s.ping.Addr = s.Addr
	s.start()
	t.Cleanup(s.Kill)
	return s
}

func (s *RedisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server (make test installs it): %v", err)
	}
	rdb := redis.NewClient(s.ping)
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if rdb.Ping(context.Background()).Err() == nil {
			return
		}
	}
	log, _ := os.ReadFile(s.log)
	s.t.Fatalf("redis-server did not answer within 10s; its log:\n%s", log)
}

// Kill stops the server at once, as a crash does.
func (s *RedisServer) Kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Restart kills the server and starts it again on the same port: it comes
// back with a new run ID and what it saved last, if anything.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// SentinelMaster is the name under which StartRedisSentinel's Sentinel
// watches its master.
const SentinelMaster = "quiver"

// StartRedisSentinel runs a master, a replica of it and a Redis Sentinel
// that watches them, each on a free port, and waits until the Sentinel knows
// the replica, so that SENTINEL FAILOVER can promote it. It returns the
// Sentinel's address, the master and the replica.
func StartRedisSentinel(t testing.TB) (sentinel string, master, replica *RedisServer) {
	t.Helper()
	master = StartRedisServer(t)
	host, port, _ := strings.Cut(master.Addr, ":")
	replica = StartRedisServer(t, "--replicaof", host, port)
	dir := t.TempDir()
	sport := strconv.Itoa(freeport.Get(t))
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte("bind 127.0.0.1\nport "+sport+"\ndir "+dir+"\nlogfile "+filepath.Join(dir, "sentinel.log")+
		"\nsentinel monitor "+SentinelMaster+" "+host+" "+port+" 1\nsentinel down-after-milliseconds "+SentinelMaster+" 1000\n"+
		"sentinel failover-timeout "+SentinelMaster+" 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server --sentinel: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sentinel = "127.0.0.1:" + sport
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	defer sc.Close()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if replicas, err := sc.Replicas(context.Background(), SentinelMaster).Result(); err == nil && len(replicas) > 0 {
			return sentinel, master, replica
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
	t.Fatalf("the Sentinel did not find the replica within 20 s; its log:\n%s", log)
	return "", nil, nil
}

// StartRedisCluster runs a Redis Cluster of n masters without replicas, the
// slots split evenly between them in the order of the addresses it
// returns, and waits until every node says the cluster is ok.
func StartRedisCluster(t testing.TB, n int) []string {
	t.Helper()
	ctx := context.Background()
	var addrs []string
	var firstBus int
	for i := range n {
		// The bus port, by default the port + 10000, could be an ephemeral
		// one (freeport.Get).
		bus := freeport.Get(t)
		if i == 0 {
			firstBus = bus
		}
		s := StartRedisServer(t, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs = append(addrs, s.Addr)
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer c.Close()
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", i*16384/n, (i+1)*16384/n-1).Err(); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			host, port, _ := strings.Cut(addrs[0], ":")
			if err := c.Do(ctx, "CLUSTER", "MEET", host, port, firstBus).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	ok := make([]bool, n)
	for i, addr := range addrs {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				info, err := c.ClusterInfo(ctx).Result()
				if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
					ok[i] = true
					return
				}
			}
		})
	}
	wg.Wait()
	if slices.Contains(ok, false) {
		t.Fatalf("the Redis Cluster of %v was not ok within 30s", addrs)
	}
	return addrs
}

// CheckRedis checks that Redis (a Redis Cluster, given several addresses)
// holds, for every entity of the fraud views, exactly the latest state in
// the changelog, expiring after the view's TTL.
func CheckRedis(t testing.TB, brokers []string, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	defer rdb.Close()
	for _, view := range []string{"user_txn", "merchant_txn"} {
		want := Changelog(t, brokers, "quiver.changelog."+view+".v1")
		prefix := "quiver:" + view + ":v1:"
		keys, err := redisKeys(ctx, rdb, prefix+"*")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != len(want) {
			t.Errorf("%s: %d keys in Redis, %d entities in the changelog", view, len(keys), len(want))
		}
		for entity, state := range want {
			got, err := rdb.Get(ctx, prefix+entity).Result()
			if err != nil || got != string(state) {
				t.Errorf("%s %s: Redis holds a different state (%v)", view, entity, err)
			}
			ttl, err := rdb.PTTL(ctx, prefix+entity).Result()
			if err != nil || ttl <= 719*time.Hour || ttl > 720*time.Hour {
				t.Errorf("%s %s: TTL %v (%v), want the view's 720h", view, entity, ttl, err)
			}
		}
	}
}

// redisKeys returns the keys matching pattern, on every master of a cluster.
func redisKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Keys(ctx, pattern).Result()
	}
	var mu sync.Mutex
	var keys []string
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		k, err := m.Keys(ctx, pattern).Result()
		mu.Lock()
		keys = append(keys, k...)
		mu.Unlock()
		return err
	})
	return keys, err
}

// MarkSeeded writes the seeded markers of tables whose changelogs have one
// partition, as ingest does once Redis holds the partition's states, so
// that a store over Redis is ready.
func MarkSeeded(t testing.TB, rdb redis.UniversalClient, prefix string, tables ...online.Table) {
	t.Helper()
	ctx := context.Background()
	m, err := onlineredis.LoadMarkers(ctx, rdb, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		if err := m.Begin(ctx, table, 0, 1); err != nil {
			t.Fatal(err)
		}
		if err := m.Done(ctx, table, 0, onlineredis.Marker{Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
}
