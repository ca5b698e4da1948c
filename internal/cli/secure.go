package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The passwords come from the environment only, never from a flag, which
// any user of the machine can read in the process list (and anyone who can
// read a pod's spec, in its arguments).
const (
	kafkaPasswordEnv         = "QUIVER_KAFKA_SASL_PASSWORD"
	redisPasswordEnv         = "QUIVER_REDIS_PASSWORD"
	redisSentinelPasswordEnv = "QUIVER_REDIS_SENTINEL_PASSWORD"
)

// Secure holds the flags of TLS and authentication to Kafka and Redis.
type Secure struct {
	KafkaTLS, RedisTLS TLS
	KafkaSASL          string
	KafkaSASLUser      string
	RedisUser          string
}

// KafkaFlags defines the flags of TLS and SASL to Kafka on fs, for a
// program that takes none of the other common flags (the fraud
// generator), and returns what gives a client's options from them once fs
// is parsed.
func KafkaFlags(fs *flag.FlagSet) func() ([]kgo.Opt, error) {
	s := &Secure{}
	s.addKafka(fs)
	return func() ([]kgo.Opt, error) { return s.kafka(os.Getenv) }
}

// add defines the flags on fs.
func (s *Secure) add(fs *flag.FlagSet) {
	s.addKafka(fs)
	s.RedisTLS.add(fs, "redis", "Redis")
	fs.StringVar(&s.RedisUser, "redis-user", "", "Redis ACL user to authenticate as, with the password in "+redisPasswordEnv+" (with only the password set: the default user, as requirepass)")
}

// addKafka defines Kafka's flags on fs.
func (s *Secure) addKafka(fs *flag.FlagSet) {
	s.KafkaTLS.add(fs, "kafka", "the Kafka brokers")
	fs.StringVar(&s.KafkaSASL, "kafka-sasl", "", "SASL mechanism to authenticate to Kafka with: plain, scram-sha-256 or scram-sha-512, as --kafka-sasl-user with the password in "+kafkaPasswordEnv)
	fs.StringVar(&s.KafkaSASLUser, "kafka-sasl-user", "", "SASL user, with --kafka-sasl")
}

// kafka returns the options of TLS and SASL every Kafka client takes, from
// the flags and getenv.
func (s *Secure) kafka(getenv func(string) string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	dial, err := s.KafkaTLS.dialer("kafka", 10*time.Second) // kgo's own dial timeout
	if err != nil {
		return nil, err
	}
	if dial != nil {
		opts = append(opts, kgo.Dialer(dial))
	}
	// The password alone, without a mechanism, is ignored, as Redis's is
	// with --online pebble: it may be in the environment for another
	// command.
	user, password := s.KafkaSASLUser, getenv(kafkaPasswordEnv)
	if s.KafkaSASL == "" {
		if user != "" {
			return nil, errors.New("--kafka-sasl-user is set, but not --kafka-sasl: name the mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
		return opts, nil
	}
	mechanisms := map[string]func(user, password string) sasl.Mechanism{
		"plain":         func(u, p string) sasl.Mechanism { return plain.Auth{User: u, Pass: p}.AsMechanism() },
		"scram-sha-256": func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha256Mechanism() },
		"scram-sha-512": func(u, p string) sasl.Mechanism { return scram.Auth{User: u, Pass: p}.AsSha512Mechanism() },
	}
	mechanism := mechanisms[strings.ToLower(s.KafkaSASL)]
	if mechanism == nil {
		return nil, fmt.Errorf("--kafka-sasl %q: want plain, scram-sha-256 or scram-sha-512", s.KafkaSASL)
	}
	if user == "" || password == "" {
		return nil, fmt.Errorf("--kafka-sasl %s needs --kafka-sasl-user and %s", s.KafkaSASL, kafkaPasswordEnv)
	}
	return append(opts, kgo.SASL(mechanism(user, password))), nil
}

// redis returns what sets a Redis client's TLS, user and password from
// the flags and getenv.
func (s *Secure) redis(getenv func(string) string) (func(*redis.UniversalOptions), error) {
	user, password := s.RedisUser, getenv(redisPasswordEnv)
	if user != "" && password == "" {
		return nil, fmt.Errorf("--redis-user %s needs its password in %s", user, redisPasswordEnv)
	}
	dial, err := s.RedisTLS.dialer("redis", 5*time.Second) // go-redis's own dial timeout
	if err != nil {
		return nil, err
	}
	sentinelPassword := getenv(redisSentinelPasswordEnv)
	return func(o *redis.UniversalOptions) {
		o.Dialer, o.Username, o.Password, o.SentinelPassword = dial, user, password, sentinelPassword
	}, nil
}

// TLS holds the flags of TLS to one service.
type TLS struct {
	On                        bool
	CAFile, CertFile, KeyFile string
}

// add defines the flags --<name>-tls... on fs, for service.
func (t *TLS) add(fs *flag.FlagSet, name, service string) {
	fs.BoolVar(&t.On, name+"-tls", false, "connect to "+service+" over TLS, trusting the system's certificate authorities")
	fs.StringVar(&t.CAFile, name+"-tls-ca-file", "", "PEM file of the certificate authorities to trust for "+service+", instead of the system's (implies --"+name+"-tls)")
	fs.StringVar(&t.CertFile, name+"-tls-cert-file", "", "PEM client certificate to present to "+service+", for mutual TLS (with --"+name+"-tls-key-file; implies --"+name+"-tls)")
	fs.StringVar(&t.KeyFile, name+"-tls-key-file", "", "PEM private key of --"+name+"-tls-cert-file")
}

// on reports whether the flags ask for TLS.
func (t *TLS) on() bool { return t.On || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// hint says what err, a failure to reach a server, may mean of TLS: a
// server that wants TLS closes a plain connection at once, and one that
// has none never answers a handshake. Kafka's client says as much itself.
func (t *TLS) hint(err error) string {
	switch {
	case !t.on() && errors.Is(err, io.EOF):
		return " (a server that closes the connection at once may want TLS)"
	case t.on() && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)):
		return " (no answer to the TLS handshake: is TLS on at that port?)"
	}
	return ""
}

// dialer returns what dials the service over TLS as the flags ask, nil
// for plain connections; name is the flags' prefix, and timeout bounds a
// dial with its handshake. It reads the files now, to refuse bad ones at
// start.
func (t *TLS) dialer(name string, timeout time.Duration) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if !t.on() {
		return nil, nil
	}
	d := &tlsDialer{files: *t, name: name, timeout: timeout}
	if _, err := d.config(); err != nil {
		return nil, err
	}
	return d.dial, nil
}

// tlsDialer dials over TLS with the configuration its files give, read
// again whenever one of them has changed: a certificate or authority
// renewed in place (a Kubernetes Secret's volume kept by cert-manager) is
// taken by the next connection, without a restart. Files that no longer
// load leave the last good configuration in use, with a warning.
type tlsDialer struct {
	files   TLS
	name    string
	timeout time.Duration

	mu     sync.Mutex
	stamps Stamps // the files as they were when cfg was read
	cfg    *tls.Config
	failed string // the latest failure to read the changed files, logged
}

// dial dials addr and shakes hands, verifying the server's certificate for
// addr's host.
func (d *tlsDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg, err := d.config()
	if err != nil {
		return nil, err
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: d.timeout}, Config: cfg}
	return dialer.DialContext(ctx, network, addr)
}

// config returns the configuration of the files as they are now.
func (d *tlsDialer) config() (*tls.Config, error) {
	stamps := Stat(d.files.CAFile, d.files.CertFile, d.files.KeyFile)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg != nil && stamps.Same(d.stamps) {
		d.failed = "" // back as it was read: a new failure is logged again
		return d.cfg, nil
	}
	cfg, err := d.files.config(d.name)
	switch {
	case err == nil:
		d.stamps, d.cfg, d.failed = stamps, cfg, ""
	case d.cfg == nil:
		return nil, err
	case err.Error() != d.failed:
		slog.Warn("TLS files changed but do not load; connecting with those read before", "err", err)
		d.failed = err.Error()
	}
	return d.cfg, nil
}

// config returns the client's TLS configuration, nil for none; name is the
// flags' prefix.
func (t *TLS) config(name string) (*tls.Config, error) {
	if !t.on() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--%s-tls-ca-file: %w", name, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%s-tls-ca-file %s: no PEM certificate in it", name, t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("--%s-tls-cert-file and --%s-tls-key-file go together", name, name)
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--%s-tls-cert-file %s, --%s-tls-key-file %s: %w", name, t.CertFile, name, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
