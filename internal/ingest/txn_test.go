package ingest_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// TestAbortedTransactions: events a producer wrote in a transaction it
// aborted are not features, nor dead letters, nor in the offline log; those
// of committed transactions and of no transaction are.
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
	ingesttest.Produce(t, brokers, "transactions", after) // ends every partition in a record, for WaitCaughtUp
	off, offlineRoot := newOffline(t)
	stop := runIngest(t, ingest.Config{Definitions: defs, Brokers: brokers, DataDir: t.TempDir(), Offline: off, MaxBatch: 500})
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	stop()
	want := slices.Concat(committed, after)
	ingesttest.CheckDLQ(t, brokers, want)
	ingesttest.Check(t, brokers, defs, want, offlineRoot)
}

// produceTransaction writes txns to the source topic in one transaction,
// committed or aborted.
func produceTransaction(t *testing.T, brokers []string, txns []ingesttest.Txn, end kgo.TransactionEndTry) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transactions"), kgo.TransactionalID(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, len(txns))
	for i, x := range txns {
		recs[i] = &kgo.Record{Key: []byte(x.Key), Value: []byte(x.Value)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, end); err != nil {
		t.Fatal(err)
	}
}
