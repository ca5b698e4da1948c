package ingest_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// TestAbortedTransactions: events a producer wrote in a transaction it
// aborted are not features, nor dead letters, nor in the offline log; those
// of committed transactions and of no transaction are. The partitions end in
// an aborted transaction: ingest commits past its records and marker, so
// that its lag is 0 and not the transaction's size, which would look like a
// stalled consumer.
func TestAbortedTransactions(t *testing.T) {
	brokers := cluster(t)
	defs := loadDefs(t)
	committed := ingesttest.Stream(21, 1000)
	aborted := ingesttest.StreamFrom(22, 500, ingesttest.Start.Add(10*time.Hour)) // would make what follows late
	after := ingesttest.StreamFrom(23, 1000, ingesttest.Start.Add(2*time.Hour))
	for i := range after { // transaction IDs of their own, for Check to tell them from committed's
		after[i].Value = strings.Replace(after[i].Value, `"txn_id":"`, `"txn_id":"after-`, 1)
	}
	produceTransaction(t, brokers, committed, kgo.TryCommit)
	produceTransaction(t, brokers, aborted, kgo.TryAbort)
	ingesttest.Produce(t, brokers, "transactions", after)
	produceTransaction(t, brokers, ingesttest.StreamFrom(24, 200, ingesttest.Start.Add(3*time.Hour)), kgo.TryAbort)
	off, offlineRoot := newOffline(t)
	reg := prometheus.NewRegistry()
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 500, Registerer: reg})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 30*time.Second)
	for _, topic := range ingesttest.Topics { // the gauge follows the commit's response
		var lag float64
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if lag = sumGauge(t, reg, "quiver_ingest_consumer_lag_records", topic); lag == 0 {
				break
			}
		}
		if lag != 0 {
			t.Errorf("%s: lag %v once caught up, want 0", topic, lag)
		}
	}

	// Records of a transaction still open are not for a read_committed
	// consumer yet: they are not lag, however long the lag is checked.
	open := beginTransaction(t, brokers, ingesttest.StreamFrom(25, 100, ingesttest.Start.Add(4*time.Hour)))
	defer open.Close()
	for deadline := time.Now().Add(6 * time.Second); /* ingest lists end offsets every 5 s */ time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if lag := sumGauge(t, reg, "quiver_ingest_consumer_lag_records", "transactions"); lag != 0 {
			t.Fatalf("lag %v behind an open transaction, want 0", lag)
		}
	}
	if err := open.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	stop()
	want := slices.Concat(committed, after)
	ingesttest.CheckDLQ(t, brokers, want)
	ingesttest.Check(t, brokers, defs, want, offlineRoot)
}

// produceTransaction writes txns to the source topic in one transaction,
// committed or aborted.
func produceTransaction(t *testing.T, brokers []string, txns []ingesttest.Txn, end kgo.TransactionEndTry) {
	t.Helper()
	cl := beginTransaction(t, brokers, txns)
	defer cl.Close()
	if err := cl.EndTransaction(context.Background(), end); err != nil {
		t.Fatal(err)
	}
}

// beginTransaction writes txns to the source topic in a transaction it
// leaves open, and returns its client, for the caller to close.
func beginTransaction(t *testing.T, brokers []string, txns []ingesttest.Txn) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"), kgo.TransactionalID(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.BeginTransaction(); err != nil {
		cl.Close()
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, len(txns))
	for i, x := range txns {
		recs[i] = &kgo.Record{Key: []byte(x.Key), Value: []byte(x.Value)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		cl.Close()
		t.Fatal(err)
	}
	return cl
}
