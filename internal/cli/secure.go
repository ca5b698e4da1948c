package cli

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

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
	kafkaPasswordEnv = "QUIVER_KAFKA_SASL_PASSWORD"
	redisPasswordEnv = "QUIVER_REDIS_PASSWORD"
)

// Secure holds the flags of TLS and authentication to Kafka and Redis.
type Secure struct {
	KafkaTLS       bool
	KafkaTLSCAFile string
	KafkaSASL      string
	KafkaSASLUser  string
	RedisTLS       bool
	RedisTLSCAFile string
	RedisUser      string
}

func (s *Secure) add(fs *flag.FlagSet) {
	fs.BoolVar(&s.KafkaTLS, "kafka-tls", false, "connect to the Kafka brokers over TLS, trusting the system's certificate authorities")
	fs.StringVar(&s.KafkaTLSCAFile, "kafka-tls-ca-file", "", "PEM file of the certificate authorities to trust for the Kafka brokers, instead of the system's (implies --kafka-tls)")
	fs.StringVar(&s.KafkaSASL, "kafka-sasl", "", "SASL mechanism to authenticate to Kafka with: plain, scram-sha-256 or scram-sha-512, as --kafka-sasl-user with the password in "+kafkaPasswordEnv)
	fs.StringVar(&s.KafkaSASLUser, "kafka-sasl-user", "", "SASL user, with --kafka-sasl")
	fs.BoolVar(&s.RedisTLS, "redis-tls", false, "connect to Redis over TLS, trusting the system's certificate authorities")
	fs.StringVar(&s.RedisTLSCAFile, "redis-tls-ca-file", "", "PEM file of the certificate authorities to trust for Redis, instead of the system's (implies --redis-tls)")
	fs.StringVar(&s.RedisUser, "redis-user", "", "Redis ACL user to authenticate as, with the password in "+redisPasswordEnv+" (with only the password set: the default user, as requirepass)")
}

// kafka returns the options of TLS and SASL every Kafka client takes, from
// the flags and getenv.
func (s *Secure) kafka(getenv func(string) string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.KafkaTLS || s.KafkaTLSCAFile != "" {
		cfg, err := tlsConfig("--kafka-tls-ca-file", s.KafkaTLSCAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	user, password := s.KafkaSASLUser, getenv(kafkaPasswordEnv)
	if s.KafkaSASL == "" {
		if user != "" || password != "" {
			return nil, fmt.Errorf("--kafka-sasl-user or %s is set, but not --kafka-sasl: name the mechanism (plain, scram-sha-256 or scram-sha-512)", kafkaPasswordEnv)
		}
		return opts, nil
	}
	if user == "" || password == "" {
		return nil, fmt.Errorf("--kafka-sasl %s needs --kafka-sasl-user and %s", s.KafkaSASL, kafkaPasswordEnv)
	}
	var m sasl.Mechanism
	switch strings.ToLower(s.KafkaSASL) {
	case "plain":
		m = plain.Auth{User: user, Pass: password}.AsMechanism()
	case "scram-sha-256":
		m = scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "scram-sha-512":
		m = scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("--kafka-sasl %q: want plain, scram-sha-256 or scram-sha-512", s.KafkaSASL)
	}
	return append(opts, kgo.SASL(m)), nil
}

// redis returns what sets a Redis client's TLS, user and password from
// the flags and getenv.
func (s *Secure) redis(getenv func(string) string) (func(*redis.UniversalOptions), error) {
	user, password := s.RedisUser, getenv(redisPasswordEnv)
	if user != "" && password == "" {
		return nil, fmt.Errorf("--redis-user %s needs its password in %s", user, redisPasswordEnv)
	}
	var cfg *tls.Config
	if s.RedisTLS || s.RedisTLSCAFile != "" {
		var err error
		if cfg, err = tlsConfig("--redis-tls-ca-file", s.RedisTLSCAFile); err != nil {
			return nil, err
		}
	}
	return func(o *redis.UniversalOptions) { o.TLSConfig, o.Username, o.Password = cfg, user, password }, nil
}

// tlsConfig returns a client's TLS configuration, trusting the certificate
// authorities of caFile (flag names it), or the system's if it is empty.
func tlsConfig(flag, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	cfg.RootCAs = x509.NewCertPool()
	if !cfg.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, caFile)
	}
	return cfg, nil
}
