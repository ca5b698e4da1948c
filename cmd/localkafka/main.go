// Command localkafka runs a Kafka-protocol broker on this machine, for the
// demo and for tests: an in-process kfake cluster from franz-go, persisted
// in a data directory so that topics, records and committed offsets survive
// restarts. It is not for production: use a Kafka cluster there.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/quiver-ml/quiver/internal/cli"
)

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	fs := flag.NewFlagSet("localkafka", flag.ContinueOnError)
	port := fs.Int("port", 9092, "port to listen on, on 127.0.0.1")
	partitions := fs.Int("partitions", 8, "partitions of the topics it creates")
	topics := fs.String("topics", "", "comma-separated topics to create at start, if missing")
	dataDir := fs.String("data-dir", "./data", "directory for Quiver's data; the broker keeps its log under kafka/")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	certFile := fs.String("tls-cert-file", "", "PEM certificate to serve TLS with, to try clients' TLS settings (with --tls-key-file)")
	keyFile := fs.String("tls-key-file", "", "PEM private key of --tls-cert-file")
	clientCAFile := fs.String("tls-client-ca-file", "", "require clients to present a certificate signed by an authority of this PEM file (mutual TLS; with --tls-cert-file)")
	saslUser := fs.String("sasl-user", "", "require SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) as this user, with the password in QUIVER_KAFKA_SASL_PASSWORD, as the clients read it")
	fs.Usage = cli.Usage(fs, "localkafka runs a local Kafka-protocol broker for the demo and tests.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log, err := cli.Logger(os.Stderr, *logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log) // for the signal's line (cli.SignalContext) and Exit
	if *partitions < 1 {
		return fmt.Errorf("--partitions %d: want at least 1", *partitions)
	}
	dir := filepath.Join(*dataDir, "kafka")
	opts := []kfake.Opt{
		kfake.Ports(*port),
		kfake.DataDir(dir),
		kfake.DefaultNumPartitions(*partitions),
		kfake.AllowAutoTopicCreation(),
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert-file: %w", err)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if *clientCAFile != "" {
			pem, err := os.ReadFile(*clientCAFile)
			if err != nil {
				return fmt.Errorf("--tls-client-ca-file: %w", err)
			}
			cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, x509.NewCertPool()
			if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--tls-client-ca-file %s: no PEM certificate in it", *clientCAFile)
			}
		}
		opts = append(opts, kfake.TLS(cfg))
	} else if *clientCAFile != "" {
		return errors.New("--tls-client-ca-file needs --tls-cert-file")
	}
	if *saslUser != "" {
		password := os.Getenv("QUIVER_KAFKA_SASL_PASSWORD")
		if password == "" {
			return errors.New("--sasl-user needs its password in QUIVER_KAFKA_SASL_PASSWORD")
		}
		opts = append(opts, kfake.EnableSASL())
		for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
			opts = append(opts, kfake.Superuser(m, *saslUser, password))
		}
	}
	if *topics != "" {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), strings.Split(*topics, ",")...))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	log.Info("broker listening", "addrs", cluster.ListenAddrs(), "tls", *certFile != "", "sasl", *saslUser != "", "data_dir", dir, "partitions", *partitions)

	ctx, stop := cli.SignalContext()
	defer stop()
	<-ctx.Done()
	log.Info("stopping broker")
	cluster.Close() // persists the log and offsets
	return nil
}
