// Command serve answers online feature lookups over HTTP from the state
// ingest maintains: a local replica of the changelog topics (--online
// pebble) or a shared Redis (--online redis).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cli"
	"github.com/quiver-ml/quiver/internal/regularfile"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/pebble"
	"github.com/quiver-ml/quiver/store/online/redis"
)

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	common := cli.AddCommon(fs)
	listen := fs.String("listen", ":8080", "HTTP address")
	metricsAddr := fs.String("metrics-addr", "", "address of a listener of its own for /metrics (and /healthz), so that the API's address need not expose the metrics; empty: /metrics on --listen")
	modelsDir := fs.String("models", "", "model repository: DIR/<name>/<version>/model.yaml and aliases.yaml; empty: no predictions")
	predLog := fs.Bool("prediction-log", true, "with --models, log every prediction to <topic-prefix>.predictions (a full buffer drops, never waits)")
	tokensFile := fs.String("auth-tokens-file", "", "file of bearer tokens, one per line (# comments); when set, the API needs one of them (read again when it changes)")
	cacheEntries := fs.Int("state-cache-entries", 10_000, "decoded entity states kept for lookups (each about 4 times its record); 0 for none")
	redisCacheMB := fs.Int64("redis-client-cache-mb", 256, "with --online redis and a single Redis (not a Redis Cluster, nor behind Sentinels): MiB of records cached in serve, invalidated by Redis when they change; 0 for none")
	drainDelay := fs.Duration("drain-delay", 0, "on SIGTERM, keep serving this long with /readyz answering 503 before closing the listener, so that load balancers stop sending requests first (the Helm chart sets 5s)")
	fs.Usage = cli.Usage(fs, "serve answers online feature lookups over HTTP.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *cacheEntries < 0 || *redisCacheMB < 0 || *drainDelay < 0 {
		return fmt.Errorf("--state-cache-entries %d, --redis-client-cache-mb %d, --drain-delay %s: none may be negative", *cacheEntries, *redisCacheMB, *drainDelay)
	}
	log, defs, off, err := common.Open()
	if err != nil {
		return err
	}
	tokenStamps := cli.Stat(*tokensFile)
	tokens, err := readTokens(*tokensFile)
	if err != nil {
		return fmt.Errorf("%w (leave --auth-tokens-file unset for an open API)", err)
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	// The same check as ingest's: definitions changed without a version
	// bump are refused, so serve never reads state with other semantics.
	if err := features.NewRegistry(off).Register(ctx, defs); err != nil {
		return cli.Stopped(ctx, err)
	}
	rdb, err := common.Redis(*redisCacheMB << 20)
	if err != nil {
		return err
	}
	// Redis may start after serve; until it answers, lookups are 503s
	// and /readyz is not ready, as when it stops answering later. A
	// Redis that never completes a handshake holds up listening no
	// longer than this.
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = common.PingRedis(pingCtx, rdb)
	cancel()
	if errors.Is(err, cli.ErrNotRedis) {
		return err
	} else if err != nil {
		log.Warn("redis does not answer yet: not ready until it does", "err", err)
	}

	reg := cli.Registry()
	var tables []online.Table
	for _, v := range defs.Views {
		tables = append(tables, online.TableOf(v))
	}
	var store online.Store
	var replica *pebble.Replica
	if rdb != nil {
		store = redis.New(rdb, common.TopicPrefix, tables)
	} else {
		replica, err = pebble.Open(pebble.Config{
			Brokers: common.BrokerList(), KafkaOpts: common.KafkaSecurity(), TopicPrefix: common.TopicPrefix, Tables: tables,
			Dir: filepath.Join(common.DataDir, "serve"), Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		store = replica
	}
	defer store.Close()

	var models *model.Repository
	if *modelsDir != "" {
		if models, err = model.Open(model.Config{Dir: *modelsDir, Definitions: defs, Logger: log, Registerer: reg}); err != nil {
			return err
		}
		defer models.Close()
		go models.Run(ctx, time.Second)
	}
	var predictions *serve.PredictionLog
	if models != nil && *predLog {
		topic := common.TopicPrefix + ".predictions"
		// A record the broker has not taken within a minute fails and is
		// counted, rather than wait in the buffer for good.
		cl, err := kgo.NewClient(common.Kafka(kgo.MaxBufferedRecords(10_000), kgo.ProducerLinger(5*time.Millisecond),
			kgo.RecordDeliveryTimeout(time.Minute))...)
		if err != nil {
			return fmt.Errorf("prediction log: %w", err)
		}
		defer cl.Close()
		// Ingest's drift detectors read it; create it if this serve is
		// first. A broker that does not answer does not hold up serving.
		createCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := kadm.NewClient(cl).CreateTopic(createCtx, -1, -1, nil, topic)
		cancel()
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			log.Warn("prediction log topic not created: predictions are not logged until it exists and Kafka takes them (check --brokers and the --kafka-* flags)", "topic", topic, "err", err)
		}
		if predictions, err = serve.NewPredictionLog(cl, topic, log, reg); err != nil {
			return err
		}
	}
	cfg := serve.Config{
		Models: models, Predictions: predictions,
		Definitions: defs, Store: store, AuthTokens: tokens, StateCacheEntries: cacheOption(*cacheEntries),
		Logger: log, Registerer: reg, Gatherer: reg,
	}
	if *metricsAddr != "" {
		cfg.Gatherer = nil
		closeMetrics, err := cli.ServeMetrics(*metricsAddr, reg, nil, log, stop)
		if err != nil {
			return err
		}
		defer closeMetrics()
	}
	srv, err := serve.New(cfg)
	if err != nil {
		return err
	}
	if len(tokens) > 0 {
		go watchTokens(ctx, log, *tokensFile, tokenStamps, time.Second, srv.SetAuthTokens)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	// A client that sends its body, or reads the response, a byte at a
	// time holds a connection and its buffers for at most these.
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 2)
	go func() {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	replicaCtx, stopReplica := context.WithCancel(context.Background())
	replicaDone := make(chan struct{})
	go func() {
		defer close(replicaDone)
		if replica != nil {
			if err := replica.Run(replicaCtx); err != nil {
				errc <- err
			}
		}
	}()
	log.Info("serve listening", "addr", ln.Addr().String(), "online", common.Online, "views", len(defs.Views), "auth", len(tokens) > 0)

	var runErr error
	select {
	case <-ctx.Done():
		if *drainDelay > 0 {
			srv.Drain()
			log.Info("draining: /readyz answers 503, requests are still served", "for", *drainDelay)
			select {
			case <-time.After(*drainDelay):
			case runErr = <-errc:
			}
		}
	case runErr = <-errc:
	}
	// Finish the requests in flight and their shadow predictions, then
	// deliver the predictions while the replica stops, all within 10 s: the
	// chart's grace period is the drain delay and 15 s.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := srv.WaitShadows(shutdown); err != nil {
		log.Warn("shadow predictions not made at shutdown", "err", err)
	}
	stopReplica() // its client's close takes at most kafkaclient.Timeout
	if err := predictions.Flush(shutdown); err != nil {
		log.Warn("predictions not logged at shutdown", "err", err)
	}
	<-replicaDone
	if runErr == nil {
		log.Info("serve stopped")
	}
	return runErr
}

// cacheOption maps the flag's 0 (none) to the Config's negative.
func cacheOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// watchTokens looks at the tokens file at path every interval until ctx
// ends and, when it has changed since stamps, reads it again and gives its
// tokens to set: a token revoked in the file, or in the Secret mounted
// there, is refused within seconds, without a restart. A file that does not
// read leaves the tokens as they were, with a warning.
func watchTokens(ctx context.Context, log *slog.Logger, path string, stamps cli.Stamps, interval time.Duration, set func([]string) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failed := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := cli.Stat(path)
		if now.Same(stamps) {
			failed = "" // back as it was read: a new failure is logged again
			continue
		}
		tokens, err := readTokens(path)
		if err == nil {
			err = set(tokens)
		}
		if err != nil {
			if err.Error() != failed {
				log.Warn("auth tokens file changed but not taken: the tokens read before stay", "err", err)
				failed = err.Error()
			}
			continue
		}
		stamps, failed = now, ""
		log.Info("auth tokens read again", "tokens", len(tokens))
	}
}

// maxTokensFileBytes bounds a tokens file: thousands of tokens.
const maxTokensFileBytes = 1 << 20

// readTokens reads a file of bearer tokens, a regular file of at most
// maxTokensFileBytes: one per line, blank lines and lines starting with #
// ignored. No file, no tokens: the API is open.
func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := regularfile.Read(path, maxTokensFileBytes)
	if err != nil {
		return nil, fmt.Errorf("--auth-tokens-file: %w", err)
	}
	var tokens []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if line == 1 {
			t = strings.TrimPrefix(t, "\ufeff") // a byte order mark, as some editors write
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.ContainsAny(t, " \t") {
			return nil, fmt.Errorf("%s:%d: a token has no spaces", path, line)
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--auth-tokens-file: %w", err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return tokens, nil
}
