package main

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/tlstest"
)

const start = "2026-02-01T00:00:00Z"

// expected returns the first n events of the generator that the flags
// --seed seed --users users --start start --drift-at 10s configure.
func expected(t *testing.T, seed uint64, users, n int) []fraudgen.Event {
	t.Helper()
	s, _ := time.Parse(time.RFC3339, start)
	g, err := fraudgen.New(fraudgen.Config{Seed: seed, Users: users, Start: s, DriftAt: s.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]fraudgen.Event, n)
	for i := range evs {
		evs[i] = g.Next()
	}
	return evs
}

// TestProduceToKafka runs the binary against an in-process broker and reads
// TestProduceSecurely: with TLS and SCRAM flags, the generator produces to
// a broker that takes nothing else, and a wrong password fails at start.
func TestProduceSecurely(t *testing.T) {
	files := tlstest.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "transactions"),
		kfake.TLS(files.Server(t, false)), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "gen", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args := []string{"--brokers", strings.Join(cluster.ListenAddrs(), ","), "--count", "10",
		"--kafka-tls-ca-file", files.CA, "--kafka-sasl", "scram-sha-512", "--kafka-sasl-user", "gen"}
	t.Setenv("QUIVER_KAFKA_SASL_PASSWORD", "guess")
	if err := run(ctx, args, nil); err == nil {
		t.Fatal("run with a wrong password: success, want a failure")
	}
	t.Setenv("QUIVER_KAFKA_SASL_PASSWORD", "s3cret")
	if err := run(ctx, args, nil); err != nil {
		t.Fatalf("run: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DialTLSConfig(files.Client(t)),
		kgo.SASL(scram.Auth{User: "gen", Pass: "s3cret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).ListEndOffsets(ctx, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	if end, _ := offsets.Lookup("transactions", 0); end.Offset != 10 {
		t.Fatalf("the topic ends at %d, want 10 records", end.Offset)
	}
}

// the topic back.
func TestProduceToKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "transactions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()

	const n = 1000
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args := []string{"--brokers", strings.Join(brokers, ","), "--count", "1000", "--seed", "9",
		"--users", "50", "--start", start, "--drift-at", "10s"}
	if err := run(ctx, args, nil); err != nil {
		t.Fatalf("run: %v", err)
	}

	want := map[string]fraudgen.Event{}
	for _, ev := range expected(t, 9, 50, n) {
		want[ev.TxnID] = ev
	}
	defs, err := features.Load("../definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("transactions"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var records []*kgo.Record
	for len(records) < n && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil && ctx.Err() == nil {
			t.Fatalf("poll: %v", err)
		}
		records = append(records, fetches.Records()...)
	}
	// Nothing more than n.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	records = append(records, cl.PollFetches(short).Records()...)
	cancelShort()
	if len(records) != n {
		t.Fatalf("consumed %d records, want %d", len(records), n)
	}

	partitions := map[int32]int{}
	var e features.Event
	for _, r := range records {
		partitions[r.Partition]++
		if err := src.DecodeJSON(r.Value, &e); err != nil {
			t.Fatalf("record %d/%d: %s: %v", r.Partition, r.Offset, r.Value, err)
		}
		txnID := e.Fields[src.Field("txn_id")].Str()
		ev, ok := want[txnID]
		if !ok {
			t.Fatalf("record %d/%d: unexpected txn_id %q", r.Partition, r.Offset, txnID)
		}
		delete(want, txnID)
		if !bytes.Equal(r.Value, ev.JSON()) {
			t.Errorf("record %d/%d: value %s, want %s", r.Partition, r.Offset, r.Value, ev.JSON())
		}
		if string(r.Key) != ev.UserID || e.Fields[src.Field("user_id")].Str() != ev.UserID {
			t.Errorf("record %d/%d: key %q, want the user_id %q", r.Partition, r.Offset, r.Key, ev.UserID)
		}
		if !r.Timestamp.Equal(ev.Time) || e.Time != ev.Time.UnixMilli() {
			t.Errorf("record %d/%d: timestamp %v, event time %d, want %v", r.Partition, r.Offset, r.Timestamp, e.Time, ev.Time)
		}
	}
	if len(partitions) < 2 {
		t.Errorf("records on partitions %v, want them spread by key", partitions)
	}
}

func TestStdoutMatchesGenerator(t *testing.T) {
	var out bytes.Buffer
	args := []string{"--stdout", "--count", "500", "--seed", "5", "--users", "20", "--start", start, "--drift-at", "10s"}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	want := expected(t, 5, 20, 500)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i, line := range lines {
		if line != string(want[i].JSON()) {
			t.Fatalf("line %d: %s, want %s", i, line, want[i].JSON())
		}
	}
}

// TestWallClockRate checks that --rate paces production and that event time
// is the time of production.
func TestWallClockRate(t *testing.T) {
	var out bytes.Buffer
	before := time.Now().Truncate(time.Millisecond)
	if err := run(t.Context(), []string{"--stdout", "--rate", "100", "--count", "21"}, &out); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if took := after.Sub(before); took < 190*time.Millisecond {
		t.Errorf("21 events at 100/s took %v, want at least 200ms", took)
	}
	defs, err := features.Load("../definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("transactions")
	var e features.Event
	var prev int64
	sc := bufio.NewScanner(&out)
	for n := 0; sc.Scan(); n++ {
		if err := src.DecodeJSON(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", sc.Bytes(), err)
		}
		if e.Time < before.UnixMilli() || e.Time > after.UnixMilli() || e.Time < prev {
			t.Fatalf("event %d at %d, want in [%d, %d] and after %d", n, e.Time, before.UnixMilli(), after.UnixMilli(), prev)
		}
		prev = e.Time
	}
}

// countingWriter discards what it is given, counting the lines.
type countingWriter struct{ lines atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.lines.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

func TestStopsOnDurationAndCancel(t *testing.T) {
	t.Run("duration", func(t *testing.T) {
		var w countingWriter
		began := time.Now()
		if err := run(t.Context(), []string{"--stdout", "--rate", "1000", "--duration", "200ms"}, &w); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > 2*time.Second || w.lines.Load() == 0 || w.lines.Load() > 300 {
			t.Errorf("took %v and wrote %d events", took, w.lines.Load())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		var w countingWriter
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(200*time.Millisecond, cancel)
		if err := run(ctx, []string{"--stdout"}, &w); err != nil { // unpaced, unbounded
			t.Fatal(err)
		}
		if w.lines.Load() == 0 {
			t.Error("wrote nothing")
		}
	})
}

func TestFlagProblemsAllReported(t *testing.T) {
	err := run(t.Context(), []string{"--stdout", "--users", "-1", "--rate", "-1", "--count", "-5",
		"--start", "yesterday", "--drift-at", "soon", "--out-of-order", "-1s"}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"users -1", "--rate -1", "--count -5", `--start "yesterday"`, `--drift-at "soon"`, "out-of-order -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := run(t.Context(), []string{"--stdout", "extra", "--rate", "10"}, nil); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("a stray argument: %v, want an error naming it", err)
	}
	if err := run(t.Context(), []string{"--stdout", "--rate", "10", "--start", start}, nil); err == nil {
		t.Error("--start with --rate > 0: no error")
	}
}

func TestParseDriftAt(t *testing.T) {
	s := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"90m":                  s.Add(90 * time.Minute),
		"2026-03-01T00:00:00Z": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseDriftAt(in, s); err != nil || !got.Equal(want) {
			t.Errorf("parseDriftAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseDriftAt("tomorrow", s); err == nil {
		t.Error(`parseDriftAt("tomorrow"): no error`)
	}
}
