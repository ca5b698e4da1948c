// Command ingest consumes the sources of a set of feature definitions from
// Kafka and maintains their views' state, the changelog topics that serve
// replicas read, and the offline logs that training sets are built from.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quiver-ml/quiver/drift/watch"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cli"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/regularfile"
)

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	common := cli.AddCommon(fs)
	group := fs.String("group-id", "quiver-ingest", "Kafka consumer group")
	instance := fs.String("instance-id", "", "static group membership: a name stable across restarts (a pod name), so a restarted instance takes its partitions back at once")
	session := fs.Duration("session-timeout", 10*time.Second, "how long an instance that stopped answering keeps its partitions")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long a stopping instance keeps trying to make its last batch durable before it exits without (the next run replays it)")
	metricsAddr := fs.String("metrics-addr", ":9101", "address of the Prometheus metrics endpoint, /metrics, and of /healthz and /readyz (ready once new view versions are caught up, the group joined and the state of its partitions restored)")
	maxBatch := fs.Int("max-batch", 50_000, "records processed, and made durable, per batch; a crash replays at most one batch")
	flushInterval := fs.Duration("flush-interval", 100*time.Millisecond, "how long a fetch gathers records (up to a megabyte) before a batch is made, 10ms to 1m: each batch writes a file per partition to the offline logs, produces the changelog and commits. Longer gives fewer, larger files; an event is visible within about twice this")
	futureSkew := fs.Duration("max-future-skew", 0, "dead-letter (reason "+ingest.ReasonFuture+") an event whose time is more than this ahead of its Kafka record's timestamp (or of the clock, when the timestamp is ahead of it too), so that a producer with a wrong clock cannot move a partition's watermark into the future and make the events after it late; 0 accepts any")
	writeRetry := fs.Duration("write-retry", 30*time.Second, "how long a batch's failed write to the offline store or to Redis is tried again before ingest stops for its restart to replay it: a restart or failover of either should fit in it")
	expireInterval := fs.Duration("expire-interval", 10*time.Minute, "how often ingest deletes the states whose latest event is older than their view's TTL (serve answers them OUTSIDE_MAX_AGE until then, and NOT_FOUND after): a tombstone in the changelog, which serve's replicas apply, and a delete in Redis")
	modelsDir := fs.String("models", "", "model repository (as serve's): with it, drift detectors watch <topic-prefix>.predictions against each version's reference profile and send retraining events to <topic-prefix>.retrain")
	driftGroup := fs.String("drift-group-id", "quiver-drift", "Kafka consumer group of the drift detectors, with --models")
	webhook := fs.String("retrain-webhook", "", "with --models, also POST each retraining event (CloudEvents JSON) to this URL, retried with backoff")
	webhookSecret := fs.String("retrain-webhook-secret-file", "", "file holding the secret that signs webhook bodies: header "+watch.SignatureHeader+": sha256=<HMAC-SHA256 hex>")
	fs.Usage = cli.Usage(fs, "ingest turns Kafka events into versioned, windowed features.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	// Checked before waiting for Kafka; zero would mean the library's
	// default, not what the flag says.
	for _, f := range []struct {
		name, want string
		ok         bool
	}{
		{"session-timeout", "must be positive", *session > 0},
		{"shutdown-timeout", "must be positive", *shutdown > 0},
		{"flush-interval", "want 10ms to 1m", *flushInterval >= 10*time.Millisecond && *flushInterval <= time.Minute},
		{"expire-interval", "must be positive", *expireInterval > 0},
		{"write-retry", "must be positive", *writeRetry > 0},
		{"max-batch", "must be positive", *maxBatch > 0},
		{"max-future-skew", "must not be negative", *futureSkew >= 0},
	} {
		if !f.ok {
			return fmt.Errorf("--%s %s: %s", f.name, fs.Lookup(f.name).Value, f.want)
		}
	}
	for name, v := range map[string]string{"metrics-addr": *metricsAddr, "group-id": *group} {
		if v == "" {
			return fmt.Errorf("--%s is empty", name)
		}
	}
	if *modelsDir != "" && *driftGroup == *group {
		return fmt.Errorf("--drift-group-id %q is also --group-id: the detectors need a consumer group of their own", *driftGroup)
	}
	if *modelsDir != "" {
		if fi, err := os.Stat(*modelsDir); err != nil {
			return fmt.Errorf("--models: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("--models %s: not a directory", *modelsDir)
		}
	} else {
		for _, name := range []string{"drift-group-id", "retrain-webhook", "retrain-webhook-secret-file"} {
			if f := fs.Lookup(name); f.Value.String() != f.DefValue {
				return fmt.Errorf("--%s needs --models", name)
			}
		}
	}
	hook, err := retrainWebhook(*webhook, *webhookSecret)
	if err != nil {
		return err
	}
	log, defs, off, err := common.Open()
	if err != nil {
		return err
	}

	ctx, stop := cli.SignalContext()
	defer stop()
	if err := features.NewRegistry(off).Register(ctx, defs); err != nil {
		return cli.Stopped(ctx, err)
	}
	rdb, err := common.Redis(0) // ingest writes: nothing to cache
	if err != nil {
		return err
	}
	if rdb != nil {
		defer rdb.Close()
	}
	reg := cli.Registry()
	// Metrics and health answer from the start: Kafka and Redis may start
	// after ingest, catching up new view versions in ingest.New can take
	// long, and a supervisor should see a live process that is not ready
	// yet.
	var ready atomic.Pointer[ingest.Ingester] // once New returned
	var starting atomic.Value                 // what it is doing until then
	starting.Store("waiting for Kafka")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		in := ready.Load()
		if in == nil {
			http.Error(w, "starting: "+starting.Load().(string), http.StatusServiceUnavailable)
			return
		}
		if !in.Consuming() {
			http.Error(w, "starting: joining the consumer group and restoring state", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	closeMetrics, err := cli.ServeMetrics(*metricsAddr, reg, mux, log, stop)
	if err != nil {
		return err
	}
	defer closeMetrics()

	// await waits for what answers check; /readyz says why not yet.
	await := func(what string, check func(context.Context) error) error {
		return cli.Await(ctx, log, what, func(ctx context.Context) error {
			err := check(ctx)
			if err != nil {
				starting.Store("waiting for " + what + ": " + err.Error())
			}
			return err
		})
	}
	if err := await("Kafka", common.PingKafka); err != nil {
		return cli.Stopped(ctx, err)
	}
	starting.Store("waiting for Redis")
	if err := await("Redis", func(ctx context.Context) error { return common.PingRedis(ctx, rdb) }); err != nil {
		return cli.Stopped(ctx, err)
	}
	starting.Store("catching up new view versions")
	in, err := ingest.New(ctx, ingest.Config{
		Definitions:     defs,
		Brokers:         common.BrokerList(),
		KafkaOpts:       common.KafkaSecurity(),
		GroupID:         *group,
		InstanceID:      *instance,
		SessionTimeout:  *session,
		ShutdownTimeout: *shutdown,
		TopicPrefix:     common.TopicPrefix,
		DataDir:         common.DataDir,
		Offline:         off,
		Redis:           rdb,
		WriteRetry:      *writeRetry,
		MaxBatch:        *maxBatch,
		FlushInterval:   *flushInterval,
		MaxFutureSkew:   *futureSkew,
		ExpireInterval:  *expireInterval,
		Logger:          log,
		Registerer:      reg,
	})
	if err != nil {
		return cli.Stopped(ctx, err)
	}
	defer in.Close()

	var monitor *watch.Monitor
	if *modelsDir != "" {
		cfg := watch.Config{Brokers: common.BrokerList(), KafkaOpts: common.KafkaSecurity(), Models: *modelsDir, Definitions: defs, TopicPrefix: common.TopicPrefix,
			GroupID: *driftGroup, InstanceID: *instance, SessionTimeout: *session, Webhook: hook, Logger: log, Registerer: reg}
		if monitor, err = watch.New(ctx, cfg); err != nil {
			return cli.Stopped(ctx, err)
		}
	}

	log.Info("ingest running", "definitions", common.Definitions, "brokers", common.Brokers, "group", *group, "metrics", *metricsAddr)
	// Ingest and the drift detectors run side by side; either failing
	// stops both.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.Run(ctx) })
	ready.Store(in)
	if monitor != nil {
		g.Go(func() error { return monitor.Run(ctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("ingest stopped: last batch committed")
	return nil
}

// retrainWebhook returns the webhook --retrain-webhook and its secret file
// name, nil for none: checked at start, not when the first retraining
// event, maybe days later, fails to go out.
func retrainWebhook(rawURL, secretFile string) (*watch.Webhook, error) {
	if rawURL == "" {
		if secretFile != "" {
			return nil, errors.New("--retrain-webhook-secret-file needs --retrain-webhook")
		}
		return nil, nil
	}
	// Not quoted back: a webhook URL may hold its secret.
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("--retrain-webhook: want an http:// or https:// URL")
	}
	hook := &watch.Webhook{URL: rawURL}
	if secretFile != "" {
		secret, err := regularfile.Read(secretFile, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("--retrain-webhook-secret-file: %w", err)
		}
		if hook.Secret = bytes.TrimSpace(secret); len(hook.Secret) == 0 {
			return nil, fmt.Errorf("--retrain-webhook-secret-file %s is empty: bodies would go unsigned", secretFile)
		}
	}
	return hook, nil
}
