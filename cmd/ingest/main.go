// Command ingest consumes the sources of a set of feature definitions from
// Kafka and maintains their views' state, the changelog topics that serve
// replicas read, and the offline logs that training sets are built from.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cli"
	"github.com/quiver-ml/quiver/internal/ingest"
)

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	defsPath := fs.String("definitions", "", "feature definitions: a YAML file or a directory of them (required)")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, host:port,...")
	prefix := fs.String("topic-prefix", "quiver", "prefix of internal topics")
	group := fs.String("group-id", "quiver-ingest", "Kafka consumer group")
	instance := fs.String("instance-id", "", "static group membership: a name stable across restarts (a pod name), so a restarted instance takes its partitions back at once")
	session := fs.Duration("session-timeout", 10*time.Second, "how long an instance that stopped answering keeps its partitions")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long a stopping instance keeps trying to make its last batch durable before it exits without (the next run replays it)")
	dataDir := fs.String("data-dir", "./data", "directory for local state")
	offlineURL := fs.String("offline", "", "offline store URL (default file://<data-dir>/offline)")
	online := fs.String("online", "pebble", "online store: pebble (state served from the changelog) or redis")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address, with --online redis")
	metricsAddr := fs.String("metrics-addr", ":9101", "address of the Prometheus metrics endpoint")
	maxBatch := fs.Int("max-batch", 50_000, "records processed, and made durable, per batch; a crash replays at most one batch")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = cli.Usage(fs, "ingest turns Kafka events into versioned, windowed features.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log, err := cli.Logger(os.Stderr, *logFormat)
	if err != nil {
		return err
	}
	if *defsPath == "" {
		return errors.New("--definitions is required")
	}
	var rdb redis.UniversalClient
	switch *online {
	case "pebble":
	case "redis":
		// One address is a single Redis; several are the seeds of a Redis Cluster.
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(*redisAddr, ",")})
		defer rdb.Close()
	default:
		return fmt.Errorf("--online %q: want pebble or redis", *online)
	}
	defs, err := features.Load(*defsPath)
	if err != nil {
		return err
	}
	off, err := cli.OpenOffline(*offlineURL, *dataDir)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := features.NewRegistry(off).Register(ctx, defs); err != nil {
		return err
	}
	if rdb != nil {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("--redis-addr %s: %w", *redisAddr, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in, err := ingest.New(ctx, ingest.Config{
		Definitions:     defs,
		Brokers:         strings.Split(*brokers, ","),
		GroupID:         *group,
		InstanceID:      *instance,
		SessionTimeout:  *session,
		ShutdownTimeout: *shutdown,
		TopicPrefix:     *prefix,
		DataDir:         *dataDir,
		Offline:         off,
		Redis:           rdb,
		MaxBatch:        *maxBatch,
		Logger:          log,
		Registerer:      reg,
	})
	if err != nil {
		return err
	}
	defer in.Close()

	srv := &http.Server{Addr: *metricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
			stop()
		}
	}()
	defer func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()

	log.Info("ingest running", "definitions", *defsPath, "brokers", *brokers, "group", *group, "metrics", *metricsAddr)
	if err := in.Run(ctx); err != nil {
		return err
	}
	log.Info("ingest stopped: last batch committed")
	return nil
}
