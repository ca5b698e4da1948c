package e2e_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/tlstest"
)

// TestSecureKafkaAndRedis: with a broker that takes only mutual TLS and
// SCRAM and a Redis that takes only mutual TLS and a password, events go through ingest
// to a Pebble replica and to Redis, and both serve modes answer the
// engine's values. The events are produced with franz-go: kcat's librdkafka
// (2.0) asks for SaslHandshake v0, which the local broker (kfake) lacks.
func TestSecureKafkaAndRedis(t *testing.T) {
	files := tlstest.New(t)
	t.Setenv("QUIVER_KAFKA_SASL_PASSWORD", "kafka-s3cret")
	t.Setenv("QUIVER_REDIS_PASSWORD", "redis-s3cret")
	brokers, _ := startBrokerAt(t, freeport.Get(t), "--tls-cert-file", files.Cert, "--tls-key-file", files.Key,
		"--tls-client-ca-file", files.CA, "--sasl-user", "quiver")
	redisServer := ingesttest.StartSecureRedisServer(t, files, "redis-s3cret")
	kafka := []string{"--kafka-tls-ca-file", files.CA, "--kafka-tls-cert-file", files.ClientCert, "--kafka-tls-key-file", files.ClientKey,
		"--kafka-sasl", "scram-sha-256", "--kafka-sasl-user", "quiver"}
	redis := []string{"--online", "redis", "--redis-addr", redisServer.Addr, "--redis-tls-ca-file", files.CA,
		"--redis-tls-cert-file", files.ClientCert, "--redis-tls-key-file", files.ClientKey}

	defs := loadDefs(t)
	txns := recentStream(2000)
	ingesttest.Produce(t, brokers, "transactions", txns, kgo.DialTLSConfig(files.Client(t)),
		kgo.SASL(scram.Auth{User: "quiver", Pass: "kafka-s3cret"}.AsSha256Mechanism()))
	startIngest(t, brokers, t.TempDir(), append(kafka, redis...)...)
	ref := ingesttest.Reference(t, defs, txns)
	for _, mode := range [][]string{nil, redis} {
		base, _ := startServe(t, brokers, t.TempDir(), append(kafka, mode...)...)
		waitReady(t, base)
		waitForReference(t, base, defs, ref)
	}
}
