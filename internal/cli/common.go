package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
	onlineredis "github.com/quiver-ml/quiver/store/online/redis"
)

// Common holds the flags every Quiver binary takes (DESIGN §5).
type Common struct {
	Definitions string
	Brokers     string
	TopicPrefix string
	DataDir     string
	Offline     string
	Online      string
	RedisAddr   string
	// RedisSentinelMaster names the master that the Redis Sentinels at
	// RedisAddr watch; empty when RedisAddr is Redis itself.
	RedisSentinelMaster string
	LogFormat           string
	Secure

	// set by Open from Secure and the environment
	kafkaSecurity []kgo.Opt
	redisSecurity func(*redis.UniversalOptions)
}

// AddCommon defines the common flags on fs.
func AddCommon(fs *flag.FlagSet) *Common {
	c := &Common{}
	fs.StringVar(&c.Definitions, "definitions", "", "feature definitions: a YAML file or a directory of them (required)")
	fs.StringVar(&c.Brokers, "brokers", "127.0.0.1:9092", "Kafka brokers, host:port,...")
	fs.StringVar(&c.TopicPrefix, "topic-prefix", "quiver", "prefix of internal topics and Redis keys, one per deployment: deployments that share it read each other's repartitioned events")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for local state")
	fs.StringVar(&c.Offline, "offline", "", "offline store URL: file:///path (file://path: relative to the working directory), or s3://bucket/prefix with AWS_* credentials, region and endpoint from the environment; it holds the registry of definitions (default file://<data-dir>/offline)")
	fs.StringVar(&c.Online, "online", "pebble", "online store: pebble (each serve replica keeps a copy from the changelogs) or redis (shared)")
	fs.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "Redis address, with --online redis; several, comma-separated, are the seeds of a Redis Cluster (or, with --redis-sentinel-master, Redis Sentinels)")
	fs.StringVar(&c.RedisSentinelMaster, "redis-sentinel-master", "", "with --online redis: the name of the master that the Redis Sentinels of --redis-addr watch; clients follow its failovers (a Sentinel's own password, if any, in "+redisSentinelPasswordEnv+")")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	c.Secure.add(fs)
	return c
}

// check refuses empty values that would otherwise mean something else: an
// empty broker is kgo's default, localhost:9092, and an empty topic prefix
// names other topics than the default in some places and the same in
// others.
func (c *Common) check() error {
	if slices.Contains(c.BrokerList(), "") {
		return fmt.Errorf("--brokers %q: an empty address", c.Brokers)
	}
	if c.TopicPrefix == "" {
		return errors.New("--topic-prefix is empty")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is empty")
	}
	return nil
}

// BrokerList returns --brokers as a list.
func (c *Common) BrokerList() []string { return strings.Split(c.Brokers, ",") }

// logger returns the logger --log-format asks for, writing to stderr.
func (c *Common) logger() (*slog.Logger, error) { return Logger(os.Stderr, c.LogFormat) }

// load loads --definitions.
func (c *Common) load() (*features.Definitions, error) {
	if c.Definitions == "" {
		return nil, errors.New("--definitions is required")
	}
	return features.Load(c.Definitions)
}

// openOffline opens the offline store --offline names: a file:// URL, by
// default file://<data-dir>/offline, or s3://bucket/prefix with the
// credentials, region and endpoint of the environment (see s3Options).
func (c *Common) openOffline() (*offline.Dir, error) {
	if c.Offline == "" {
		return offline.NewDir(filepath.Join(c.DataDir, "offline"))
	}
	u, err := url.Parse(c.Offline)
	if err != nil {
		return nil, fmt.Errorf("--offline %q: %w", c.Offline, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--offline %q: a query or fragment means nothing here (an S3 store's settings come from the AWS_* environment)", c.Offline)
	}
	switch u.Scheme {
	case "file":
		return offline.NewDir(filePath(u))
	case "s3":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		off, err := offline.NewS3Dir(ctx, s3Options(u, os.Getenv))
		if err != nil {
			return nil, fmt.Errorf("--offline %s: %w", c.Offline, err)
		}
		return off, nil
	}
	return nil, fmt.Errorf("--offline %q: want file:///path or s3://bucket/prefix", c.Offline)
}

// filePath returns the path of a file:// URL: file:///abs/path, or
// file://localhost/abs/path, is absolute; file://rel/path, file://./rel/path
// and file:rel/path, which the URL syntax reads as a host and a path, are
// relative to the working directory, as the default file://<data-dir>/offline
// is with a relative --data-dir.
func filePath(u *url.URL) string {
	switch {
	case u.Opaque != "":
		return u.Opaque
	case u.Host == "" || u.Host == "localhost":
		return u.Path
	}
	return u.Host + u.Path
}

// s3Options are the options of the store at s3://bucket/prefix, from the
// variables the AWS tools read: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN (unset: the machine's or pod's role), AWS_REGION or
// AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an
// S3-compatible server.
func s3Options(u *url.URL, getenv func(string) string) offline.S3Options {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	return offline.S3Options{
		Bucket:          u.Host,
		Prefix:          strings.Trim(u.Path, "/"),
		Endpoint:        first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		Region:          first("AWS_REGION", "AWS_DEFAULT_REGION"),
		AccessKeyID:     getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    getenv("AWS_SESSION_TOKEN"),
	}
}

// Open opens what the common flags name: the logger, the definitions and
// the offline store.
func (c *Common) Open() (*slog.Logger, *features.Definitions, *offline.Dir, error) {
	log, err := c.logger()
	if err != nil {
		return nil, nil, nil, err
	}
	slog.SetDefault(log) // for Exit, and for libraries that log
	redis.SetLogger(newRedisLog(log))
	// The collector works harder near 90% of the container's memory limit
	// rather than let the kernel kill the process at it. GOMEMLIMIT, or
	// AUTOMEMLIMIT (a ratio, or off), overrides it; Set logs its own
	// errors, and without a limit there is nothing to set.
	_, _ = memlimit.Set(memlimit.WithLogger(log))
	if err := c.check(); err != nil {
		return nil, nil, nil, err
	}
	if c.Online != "pebble" && c.Online != "redis" { // before anything is written
		return nil, nil, nil, fmt.Errorf("--online %q: want pebble or redis", c.Online)
	}
	if c.kafkaSecurity, err = c.Secure.kafka(os.Getenv); err != nil {
		return nil, nil, nil, err
	}
	if c.redisSecurity, err = c.Secure.redis(os.Getenv); err != nil {
		return nil, nil, nil, err
	}
	defs, err := c.load()
	if err != nil {
		return nil, nil, nil, err
	}
	off, err := c.openOffline()
	if err != nil {
		return nil, nil, nil, err
	}
	return log, defs, off, nil
}

// Redis returns a client of --redis-addr with --online redis: one address
// is a single Redis, several the seeds of a Redis Cluster, and with
// --redis-sentinel-master they are Sentinels and the client is of the
// master they name. It returns nil for pebble. cacheBytes > 0 turns on
// client-side caching of that size on a single Redis (see
// redis.ClientOptions; go-redis has none behind Sentinels). It does not
// connect: PingRedis does.
func (c *Common) Redis(cacheBytes int64) (redis.UniversalClient, error) {
	switch c.Online {
	case "pebble":
		return nil, nil
	case "redis":
		opts := &redis.UniversalOptions{Addrs: strings.Split(c.RedisAddr, ","), MasterName: c.RedisSentinelMaster}
		c.redisSecurity(opts)
		if cacheBytes > 0 && c.RedisSentinelMaster == "" {
			onlineredis.CacheOptions(opts, cacheBytes)
		}
		return redis.NewUniversalClient(opts), nil
	}
	return nil, fmt.Errorf("--online %q: want pebble or redis", c.Online) // Open said so first
}

// ErrNotRedis is PingRedis's error for a Redis Sentinel given as Redis: a
// setting to correct, which waiting does not mend (Await returns it).
var ErrNotRedis = errors.New("a Redis Sentinel, not Redis: name the master it watches with --redis-sentinel-master")

// PingRedis checks that Redis answers rdb, a client of Redis; nil (pebble)
// always does.
func (c *Common) PingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	if rdb == nil {
		return nil
	}
	err := rdb.Ping(ctx).Err()
	if err == nil && c.RedisSentinelMaster == "" {
		// A Sentinel answers PING too, and then refuses every read.
		var info string
		if info, err = rdb.Info(ctx, "server").Result(); err == nil && strings.Contains(info, "redis_mode:sentinel") {
			err = ErrNotRedis
		}
	}
	switch {
	case err == nil:
		return nil
	case c.RedisSentinelMaster != "":
		return fmt.Errorf("--redis-sentinel-master %s at --redis-addr %s: %w%s", c.RedisSentinelMaster, c.RedisAddr, err, c.sentinelHint(err))
	}
	return fmt.Errorf("--redis-addr %s: %w%s", c.RedisAddr, err, c.RedisTLS.hint(err))
}

// sentinelHint says what err, a failure to reach the master through the
// Sentinels, may mean.
func (c *Common) sentinelHint(err error) string {
	fromSentinels := strings.Contains(err.Error(), "all sentinels") // go-redis's words when no Sentinel helped
	switch {
	case errors.Is(err, redis.Nil): // what a Sentinel answers for a name it does not know
		return " (the Sentinels know no master of that name)"
	case fromSentinels && strings.Contains(err.Error(), "NOAUTH"):
		return " (the Sentinels want a password: set " + redisSentinelPasswordEnv + ")"
	case fromSentinels && strings.Contains(err.Error(), "unknown command 'sentinel'"):
		return " (--redis-addr is Redis itself, not its Sentinels)"
	case strings.Contains(err.Error(), "NOAUTH"):
		return " (the master wants a password: set " + redisPasswordEnv + ")"
	}
	return c.RedisTLS.hint(err)
}

// KafkaSecurity returns the options of TLS and SASL that every Kafka
// client takes (after Open).
func (c *Common) KafkaSecurity() []kgo.Opt { return c.kafkaSecurity }

// Kafka returns the options of a Kafka client of --brokers: the seed
// brokers, KafkaSecurity, then extra.
func (c *Common) Kafka(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(c.BrokerList()...)}, c.kafkaSecurity, extra)
}

// PingKafka checks that a broker of --brokers answers, and takes the
// client's TLS and SASL.
func (c *Common) PingKafka(ctx context.Context) error {
	cl, err := kgo.NewClient(c.Kafka()...)
	if err != nil {
		return fmt.Errorf("--brokers %s: %w", c.Brokers, err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("--brokers %s: %w", c.Brokers, err)
	}
	return nil
}

// Await calls check every second until it succeeds, for a service that may
// start after this process (Kafka or Redis, under Kubernetes), and logs a
// warning for its first failure and each failure unlike the one before (a
// broker that comes up but refuses the credentials). If ctx ends first, it
// returns ctx's error with check's last. An error no wait mends
// (ErrNotRedis) it returns at once.
func Await(ctx context.Context, log *slog.Logger, what string, check func(context.Context) error) error {
	logged := ""
	for {
		err := check(ctx)
		if err == nil {
			if logged != "" {
				log.Info(what + " answers")
			}
			return nil
		}
		if errors.Is(err, ErrNotRedis) {
			return err
		}
		if err.Error() != logged {
			log.Warn("waiting for "+what, "err", err)
			logged = err.Error()
		}
		select {
		case <-ctx.Done():
			log.Info("stopped while waiting for " + what)
			return fmt.Errorf("waiting for %s: %w (%w)", what, ctx.Err(), err)
		case <-time.After(awaitEvery):
		}
	}
}

// awaitEvery is how often Await checks.
var awaitEvery = time.Second
