package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/tlstest"
)

// secure parses args as a binary's common flags and sets up TLS and
// authentication as Open does, with env as the environment.
func secure(t *testing.T, env map[string]string, args ...string) (*Common, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c := AddCommon(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	var err error
	if c.kafkaSecurity, err = c.Secure.kafka(getenv); err != nil {
		return nil, err
	}
	if c.redisSecurity, err = c.Secure.redis(getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// pingRedis makes the Redis client that the common flags args and env
// give, as a binary does (closed when the test ends), and returns it with
// what PingRedis says.
func pingRedis(t *testing.T, env map[string]string, args ...string) (redis.UniversalClient, error) {
	t.Helper()
	common, err := secure(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := common.Redis(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return rdb, common.PingRedis(ctx, rdb)
}

// TestKafkaSecurity: a broker that takes only TLS and SASL answers a client
// with the right authority, mechanism, user and password, and no other.
func TestKafkaSecurity(t *testing.T) {
	files := tlstest.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(files.Server(t, false)), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "quiver", "s3cret"), kfake.Superuser("PLAIN", "quiver", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	mutual, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(files.Server(t, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer mutual.Close()
	sasl := "--brokers=" + strings.Join(cluster.ListenAddrs(), ",")
	certs := "--brokers=" + strings.Join(mutual.ListenAddrs(), ",")
	right := map[string]string{kafkaPasswordEnv: "s3cret"}
	for _, c := range []struct {
		name    string
		env     map[string]string
		args    []string
		brokers string
		ok      bool
	}{
		{"scram", right, []string{"--kafka-tls-ca-file", files.CA, "--kafka-sasl", "scram-sha-512", "--kafka-sasl-user", "quiver"}, sasl, true},
		{"plain", right, []string{"--kafka-tls-ca-file", files.CA, "--kafka-sasl", "PLAIN", "--kafka-sasl-user", "quiver"}, sasl, true},
		{"wrong password", map[string]string{kafkaPasswordEnv: "guess"}, []string{"--kafka-tls-ca-file", files.CA, "--kafka-sasl", "scram-sha-512", "--kafka-sasl-user", "quiver"}, sasl, false},
		{"wrong mechanism", right, []string{"--kafka-tls-ca-file", files.CA, "--kafka-sasl", "scram-sha-256", "--kafka-sasl-user", "quiver"}, sasl, false},
		{"no SASL", nil, []string{"--kafka-tls-ca-file", files.CA}, sasl, false},
		{"no TLS", right, []string{"--kafka-sasl", "scram-sha-512", "--kafka-sasl-user", "quiver"}, sasl, false},
		{"the system's authorities", right, []string{"--kafka-tls", "--kafka-sasl", "scram-sha-512", "--kafka-sasl-user", "quiver"}, sasl, false},
		{"client certificate", nil, []string{"--kafka-tls-ca-file", files.CA, "--kafka-tls-cert-file", files.ClientCert, "--kafka-tls-key-file", files.ClientKey}, certs, true},
		{"no client certificate", nil, []string{"--kafka-tls-ca-file", files.CA}, certs, false},
		{"a server's certificate", nil, []string{"--kafka-tls-ca-file", files.CA, "--kafka-tls-cert-file", files.Cert, "--kafka-tls-key-file", files.Key}, certs, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			common, err := secure(t, c.env, append(c.args, c.brokers)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := common.PingKafka(ctx); (err == nil) != c.ok {
				t.Fatalf("PingKafka: %v, want success %v", err, c.ok)
			}
		})
	}
}

// TestTLSRenewal: certificates and authorities renewed in place, as a
// Kubernetes Secret's volume is, are taken by the next connection, and
// files that do not load then leave the last good ones in use.
func TestTLSRenewal(t *testing.T) {
	files, other := tlstest.New(t), tlstest.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(files.Server(t, true)))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	dir := t.TempDir()
	ca, cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// install replaces the files at once, a new file renamed over the
	// old, as the kubelet swaps a Secret's directory.
	install := func(contents ...[]byte) {
		for i, path := range []string{ca, cert, key} {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, contents[i], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(paths ...string) [][]byte {
		var b [][]byte
		for _, p := range paths {
			c, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, c)
		}
		return b
	}
	install(read(other.CA, other.ClientCert, other.ClientKey)...)
	common, err := secure(t, nil, "--brokers="+strings.Join(cluster.ListenAddrs(), ","),
		"--kafka-tls-ca-file", ca, "--kafka-tls-cert-file", cert, "--kafka-tls-key-file", key)
	if err != nil {
		t.Fatal(err)
	}
	ping := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return common.PingKafka(ctx)
	}
	if err := ping(); err == nil {
		t.Fatal("PingKafka with another authority's files: success, want a failure")
	}
	install(read(files.CA, files.ClientCert, files.ClientKey)...)
	if err := ping(); err != nil {
		t.Fatalf("PingKafka after the renewal: %v", err)
	}
	install([]byte("not a certificate"), []byte("nor this"), []byte("nor a key"))
	if err := ping(); err != nil {
		t.Fatalf("PingKafka after files that do not load: %v, want the last good ones used", err)
	}
}

// TestRedisSecurity: a Redis that takes only TLS with a client certificate
// and requires a password answers a client with the right authority,
// certificate and password, and no other.
func TestRedisSecurity(t *testing.T) {
	files := tlstest.New(t)
	srv := ingesttest.StartSecureRedisServer(t, files, "s3cret")
	plain := ingesttest.StartRedis(t)
	right := map[string]string{redisPasswordEnv: "s3cret"}
	ca := []string{"--redis-tls-ca-file", files.CA}
	client := []string{"--redis-tls-cert-file", files.ClientCert, "--redis-tls-key-file", files.ClientKey}
	for _, c := range []struct {
		name, addr string
		env        map[string]string
		args       []string
		want       string // in the error; empty: none
	}{
		{"right", srv.Addr, right, slices.Concat(ca, client), ""},
		{"the default user", srv.Addr, right, slices.Concat(ca, client, []string{"--redis-user", "default"}), ""},
		{"wrong password", srv.Addr, map[string]string{redisPasswordEnv: "guess"}, slices.Concat(ca, client), "WRONGPASS"},
		{"no password", srv.Addr, nil, slices.Concat(ca, client), "NOAUTH"},
		{"no client certificate", srv.Addr, right, ca, "--redis-addr"},
		{"no TLS", srv.Addr, right, nil, "may want TLS"},
		{"the system's authorities", srv.Addr, right, append([]string{"--redis-tls"}, client...), "certificate"},
		{"TLS to a plain server", plain, right, ca, "is TLS on at that port?"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := pingRedis(t, c.env, slices.Concat(c.args, []string{"--online", "redis", "--redis-addr", c.addr})...)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("PingRedis: %v, want %q", err, c.want)
			}
		})
	}
}

// TestRedisSentinel: with --redis-sentinel-master, --redis-addr names the
// Sentinels, and the client writes to the master they name. An unknown
// name, a Sentinel given as Redis and Redis given as a Sentinel fail at
// the start, saying so; a Sentinel given as Redis is not waited for.
func TestRedisSentinel(t *testing.T) {
	sentinel, master, _ := ingesttest.StartRedisSentinel(t)
	for _, c := range []struct {
		addr, master string
		want         []string // in the error; none: success
	}{
		{sentinel, ingesttest.SentinelMaster, nil},
		{sentinel, "nope", []string{"--redis-sentinel-master nope at --redis-addr " + sentinel + ": ", "(the Sentinels know no master of that name)"}},
		{sentinel, "", []string{"--redis-addr " + sentinel + ": a Redis Sentinel, not Redis: name the master it watches with --redis-sentinel-master"}},
		{master.Addr, ingesttest.SentinelMaster, []string{"(--redis-addr is Redis itself, not its Sentinels)"}},
	} {
		rdb, err := pingRedis(t, nil, "--online", "redis", "--redis-addr", c.addr, "--redis-sentinel-master", c.master)
		if c.addr == sentinel && c.master == "" {
			waited := Await(context.Background(), slog.New(slog.DiscardHandler), "Redis", func(context.Context) error { return err })
			if !errors.Is(waited, ErrNotRedis) {
				t.Errorf("awaiting a Sentinel given as Redis: %v, want ErrNotRedis at once", waited)
			}
		}
		if c.want != nil {
			for _, want := range c.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("PingRedis of %s, master %q: %v, want %q", c.addr, c.master, err, want)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("PingRedis: %v", err)
		}
		ctx := context.Background()
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		direct := redis.NewClient(&redis.Options{Addr: master.Addr})
		defer direct.Close()
		if v, err := direct.Get(ctx, "k").Result(); v != "v" {
			t.Errorf("the master holds %q (%v), want the client's write", v, err)
		}
	}
}

// TestSecureFlags: settings that cannot work are refused at start, naming
// the flag or variable.
func TestSecureFlags(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	password := map[string]string{kafkaPasswordEnv: "p"}
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--kafka-sasl", "gssapi"}, `--kafka-sasl "gssapi": want plain, scram-sha-256 or scram-sha-512`},
		{password, []string{"--kafka-sasl", "plain"}, "--kafka-sasl plain needs --kafka-sasl-user and QUIVER_KAFKA_SASL_PASSWORD"},
		{nil, []string{"--kafka-sasl", "plain", "--kafka-sasl-user", "u"}, "needs --kafka-sasl-user and QUIVER_KAFKA_SASL_PASSWORD"},
		{password, []string{"--kafka-sasl-user", "u"}, "--kafka-sasl-user is set, but not --kafka-sasl"},
		{nil, []string{"--kafka-tls-ca-file", "/no/such/ca.pem"}, "--kafka-tls-ca-file: open /no/such/ca.pem"},
		{nil, []string{"--kafka-tls-ca-file", notPEM}, "--kafka-tls-ca-file " + notPEM + ": no PEM certificate in it"},
		{nil, []string{"--redis-tls-ca-file", notPEM}, "--redis-tls-ca-file " + notPEM + ": no PEM certificate in it"},
		{nil, []string{"--redis-user", "app"}, "--redis-user app needs its password in QUIVER_REDIS_PASSWORD"},
		{nil, []string{"--kafka-tls-cert-file", notPEM}, "--kafka-tls-cert-file and --kafka-tls-key-file go together"},
		{nil, []string{"--redis-tls-cert-file", notPEM, "--redis-tls-key-file", notPEM}, "--redis-tls-cert-file " + notPEM + ", --redis-tls-key-file " + notPEM + ": tls: failed to find any PEM data in certificate input"},
	} {
		_, err := secure(t, c.env, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: %v, want %q", c.env, c.args, err, c.want)
		}
	}
	// A password in the environment for another command, as a shell that
	// runs the local broker with SASL has it, is ignored.
	if _, err := secure(t, map[string]string{kafkaPasswordEnv: "p", redisPasswordEnv: "p"}); err != nil {
		t.Errorf("passwords alone: %v, want them ignored", err)
	}
}
