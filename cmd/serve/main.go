// Command serve answers online feature lookups over HTTP from the state
// ingest maintains: a local replica of the changelog topics (--online
// pebble) or a shared Redis (--online redis).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cli"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/pebble"
	"github.com/quiver-ml/quiver/store/online/redis"
)

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	defsPath := fs.String("definitions", "", "feature definitions: a YAML file or a directory of them (required)")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, host:port,... (the changelogs, with --online pebble)")
	prefix := fs.String("topic-prefix", "quiver", "prefix of internal topics and Redis keys")
	dataDir := fs.String("data-dir", "./data", "directory for local state: the replica lives in <data-dir>/serve")
	offlineURL := fs.String("offline", "", "offline store URL, whose registry the definitions are checked against (default file://<data-dir>/offline)")
	onlineKind := fs.String("online", "pebble", "online store: pebble (a local replica of the changelogs) or redis (shared)")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address, with --online redis; several, comma-separated, for a Redis Cluster")
	listen := fs.String("listen", ":8080", "HTTP address")
	tokensFile := fs.String("auth-tokens-file", "", "file of bearer tokens, one per line (# comments); when set, the API needs one of them")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = cli.Usage(fs, "serve answers online feature lookups over HTTP.")
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
	defs, err := features.Load(*defsPath)
	if err != nil {
		return err
	}
	tokens, err := readTokens(*tokensFile)
	if err != nil {
		return err
	}
	off, err := cli.OpenOffline(*offlineURL, *dataDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The same check as ingest's: definitions changed without a version
	// bump are refused, so serve never reads state with other semantics.
	if err := features.NewRegistry(off).Register(ctx, defs); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var store online.Store
	var replica *pebble.Replica
	switch *onlineKind {
	case "pebble":
		var tables []online.Table
		for _, v := range defs.Views {
			tables = append(tables, online.TableOf(v))
		}
		replica, err = pebble.Open(pebble.Config{
			Brokers: strings.Split(*brokers, ","), TopicPrefix: *prefix, Tables: tables,
			Dir: filepath.Join(*dataDir, "serve"), Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		store = replica
	case "redis":
		// One address is a single Redis; several are the seeds of a Redis Cluster.
		client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: strings.Split(*redisAddr, ",")})
		if err := client.Ping(ctx).Err(); err != nil {
			client.Close()
			return fmt.Errorf("--redis-addr %s: %w", *redisAddr, err)
		}
		store = redis.New(client, *prefix)
	default:
		return fmt.Errorf("--online %q: want pebble or redis", *onlineKind)
	}
	defer store.Close()

	srv, err := serve.New(serve.Config{
		Definitions: defs, Store: store, AuthTokens: tokens,
		Logger: log, Registerer: reg, Gatherer: reg,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
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
	log.Info("serve listening", "addr", ln.Addr().String(), "online", *onlineKind, "views", len(defs.Views), "auth", len(tokens) > 0)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	// Finish the requests in flight, then stop the replica.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	stopReplica()
	<-replicaDone
	if runErr == nil {
		log.Info("serve stopped")
	}
	return runErr
}

// readTokens reads a file of bearer tokens: one per line, blank lines and
// lines starting with # ignored. No file, no tokens: the API is open.
func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--auth-tokens-file: %w", err)
	}
	defer f.Close()
	var tokens []string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
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
		return nil, fmt.Errorf("%s: no tokens (leave --auth-tokens-file unset for an open API)", path)
	}
	return tokens, nil
}
