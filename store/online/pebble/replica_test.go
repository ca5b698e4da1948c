package pebble_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/pebble"
	"github.com/quiver-ml/quiver/store/online/storetest"
)

var tables = []online.Table{{View: "user_txn", Version: 1}, {View: "user_txn", Version: 2}, {View: "merchant_txn", Version: 1}}

// broker starts a Kafka-protocol broker on a real TCP port with the
// changelog topics of tables, compacted, three partitions each.
func broker(t *testing.T) []string {
	c := newCluster(t)
	createTopics(t, c.ListenAddrs())
	return c.ListenAddrs()
}

// newCluster starts a Kafka-protocol broker on a real TCP port, with no
// topics, until the test ends.
func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func createTopics(t *testing.T, brokers []string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	for _, tb := range tables {
		compact := "compact"
		if _, err := adm.CreateTopic(context.Background(), 3, -1, map[string]*string{"cleanup.policy": &compact}, online.ChangelogTopic("test", tb)); err != nil {
			t.Fatal(err)
		}
	}
}

// produce writes records to their changelogs, keyed by entity, as ingest does.
func produce(t *testing.T, brokers []string, records []online.Record) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for _, r := range records {
		rs = append(rs, &kgo.Record{Topic: online.ChangelogTopic("test", r.Table), Key: []byte(r.Key), Value: r.Value})
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// start opens a replica in dir and runs it until the test ends or stop is
// called; it returns once the replica is ready. A watcher, if any, watches
// it from the start.
func start(t *testing.T, brokers []string, dir string, reg prometheus.Registerer, w ...*watcher) (r *pebble.Replica, stop func()) {
	r, err := pebble.Open(pebble.Config{Brokers: brokers, TopicPrefix: "test", Tables: tables, Dir: dir, CacheBytes: 8 << 20, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range w {
		w.watch(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() { stop(); r.Close() })
	waitReady(t, r)
	return r, stop
}

func waitReady(t *testing.T, s online.Store) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = s.Ready(context.Background()); err == nil {
			return
		}
	}
	t.Fatalf("not ready after 20s: %v", err)
}

func TestReplica(t *testing.T) {
	storetest.Run(t, func(t *testing.T, records []online.Record) online.Store {
		brokers := broker(t)
		produce(t, brokers, records)
		r, _ := start(t, brokers, t.TempDir(), nil)
		return r
	})
}

// A restarted replica resumes from the offsets it had applied: it applies
// only what was produced while it was down, and keeps what it had.
func TestReplicaResumes(t *testing.T) {
	brokers := broker(t)
	dir := t.TempDir()
	u1 := tables[0]
	produce(t, brokers, []online.Record{{Table: u1, Key: "a", Value: []byte("a1")}, {Table: u1, Key: "b", Value: []byte("b1")}})
	r, stop := start(t, brokers, dir, nil)
	stop()
	r.Close()

	produce(t, brokers, []online.Record{{Table: u1, Key: "a", Value: []byte("a2")}, {Table: u1, Key: "c", Value: []byte("c1")}, {Table: u1, Key: "b", Value: nil}})
	reg := prometheus.NewRegistry()
	r, _ = start(t, brokers, dir, reg)
	if n := metricValue(t, reg, "quiver_serve_replica_records_applied_total"); n != 3 {
		t.Errorf("the restarted replica applied %v records, want the 3 produced while it was down", n)
	}
	got, err := storetest.GetAll(context.Background(), r, u1, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "a2" || got[1] != nil || string(got[2]) != "c1" {
		t.Errorf("got %q, want a2, deleted by the tombstone, c1", got)
	}

	// It keeps applying what comes next.
	produce(t, brokers, []online.Record{{Table: u1, Key: "d", Value: []byte("d1")}})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := storetest.GetAll(context.Background(), r, u1, []string{"d"})
		if err == nil && string(got[0]) == "d1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a record produced after the bootstrap is not visible: %q, %v", got, err)
		}
	}
}

// A replica started before ingest has created the changelogs waits for
// them, not ready, and says why.
func TestReplicaWaitsForTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	r, err := pebble.Open(pebble.Config{Brokers: brokers, TopicPrefix: "test", Tables: tables, Dir: t.TempDir(), CacheBytes: 8 << 20, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for {
		err := r.Ready(ctx)
		if err == nil {
			t.Fatal("ready without changelog topics")
		}
		if strings.Contains(err.Error(), "not created yet") {
			t.Logf("readiness before the topics exist: %v", err)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	createTopics(t, brokers)
	produce(t, brokers, []online.Record{{Table: tables[0], Key: "a", Value: []byte("a1")}})
	waitReady(t, r)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := pebble.Open(pebble.Config{})
	for _, want := range []string{"no brokers", "no tables", "no directory"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(Config{}) = %v; want it to say %q", err, want)
		}
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A changelog deleted and created again (a view version reset) is not
// served from the replica's old copy after a restart.
func TestReplicaChangelogRecreated(t *testing.T) {
	brokers := broker(t)
	dir := t.TempDir()
	u1 := tables[0]
	var old []online.Record
	for i := range 20 {
		old = append(old, online.Record{Table: u1, Key: fmt.Sprintf("old%d", i), Value: []byte("v")})
	}
	produce(t, brokers, old)
	r, stop := start(t, brokers, dir, nil)
	stop()
	r.Close()

	recreate(t, brokers, u1)
	produce(t, brokers, []online.Record{{Table: u1, Key: "new", Value: []byte("n")}})

	w := &watcher{t: t}
	r, _ = start(t, brokers, dir, nil, w)
	got, err := storetest.GetAll(context.Background(), r, u1, []string{"old0", "old7", "new"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != nil || got[1] != nil || string(got[2]) != "n" {
		t.Fatalf("got %q, want the old records gone and the new one", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.dropped, []online.Table{u1}) || len(w.seen) != 1 || w.seen[0].Key != "new" {
		t.Errorf("told of %v dropped and %v changed, want %v dropped, then the new record", w.dropped, w.seen, u1)
	}
}

// recreate deletes a table's changelog and creates it again, empty, as a
// view version reset does.
func recreate(t *testing.T, brokers []string, tb online.Table) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	if _, err := adm.DeleteTopics(context.Background(), online.ChangelogTopic("test", tb)); err != nil {
		t.Fatal(err)
	}
	compact := "compact"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := adm.CreateTopic(context.Background(), 3, -1, map[string]*string{"cleanup.policy": &compact}, online.ChangelogTopic("test", tb))
		if err == nil && resp.Err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("recreate the changelog: %v %v", err, resp.Err)
		}
	}
}

// records returns n records of table tb keyed prefix0, prefix1, ...
func records(tb online.Table, prefix string, n int) []online.Record {
	var rs []online.Record
	for i := range n {
		rs = append(rs, online.Record{Table: tb, Key: fmt.Sprintf("%s%d", prefix, i), Value: []byte(prefix)})
	}
	return rs
}

// servedOf says which of old r still serves and which of recent it does
// not: "" when it serves recent and nothing of old.
func servedOf(r online.Store, tb online.Table, old, recent []online.Record) (string, error) {
	var keys []string
	for _, rec := range slices.Concat(old, recent) {
		keys = append(keys, rec.Key)
	}
	got, err := storetest.GetAll(context.Background(), r, tb, keys)
	if err != nil {
		return "", err
	}
	var stale, missing []string
	for i, rec := range old {
		if got[i] != nil {
			stale = append(stale, rec.Key)
		}
	}
	for i, rec := range recent {
		if !bytes.Equal(got[len(old)+i], rec.Value) {
			missing = append(missing, rec.Key)
		}
	}
	if len(stale) == 0 && len(missing) == 0 {
		return "", nil
	}
	return fmt.Sprintf("served %d of %d records of the deleted changelog %v; missing %d of %d of the new one %v", len(stale), len(old), stale, len(missing), len(recent), missing), nil
}

// A changelog recreated while the replica is down, that then holds more
// records than the replica had applied of the old one, is read from its
// start: the replica's stored offsets belong to the old topic (told apart
// by its topic ID), not to the new one.
func TestReplicaChangelogRecreatedLonger(t *testing.T) {
	brokers := broker(t)
	dir := t.TempDir()
	u1 := tables[0]
	old := records(u1, "old", 20)
	produce(t, brokers, old)
	r, stop := start(t, brokers, dir, nil)
	stop()
	r.Close()

	recreate(t, brokers, u1)
	recent := records(u1, "new", 60)
	produce(t, brokers, recent)

	w := &watcher{t: t}
	r, _ = start(t, brokers, dir, nil, w)
	if diff, err := servedOf(r, u1, old, recent); err != nil || diff != "" {
		t.Errorf("%s %v", diff, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.dropped, []online.Table{u1}) {
		t.Errorf("told of %v dropped, want %v", w.dropped, u1)
	}
}

// A replica written by a version that stored no topic IDs keeps what it
// holds on its first start with IDs, and adopts the topic's ID.
func TestReplicaAdoptsTopicID(t *testing.T) {
	brokers := broker(t)
	dir := t.TempDir()
	u1 := tables[0]
	old := records(u1, "old", 20)
	produce(t, brokers, old)
	r, stop := start(t, brokers, dir, nil)
	stop()
	r.Close()

	// Remove the stored IDs, as an older version of the replica left them.
	db, err := cpebble.Open(dir, &cpebble.Options{FormatMajorVersion: cpebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteRange([]byte("i\x00"), []byte("i\x01"), cpebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	w := &watcher{t: t}
	r, _ = start(t, brokers, dir, reg, w)
	if diff, err := servedOf(r, u1, nil, old); err != nil || diff != "" {
		t.Errorf("%s %v", diff, err)
	}
	if n := metricValue(t, reg, "quiver_serve_replica_records_applied_total"); n != 0 {
		t.Errorf("applied %v records, want none: the stored offsets are kept", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.dropped) > 0 {
		t.Errorf("told of tables dropped: %v", w.dropped)
	}
}

// A changelog recreated while the replica runs is read again from its
// start, and the replica's copy of the old one is dropped.
func TestReplicaChangelogRecreatedWhileRunning(t *testing.T) {
	brokers := broker(t)
	u1 := tables[0]
	old := records(u1, "old", 20)
	produce(t, brokers, old)
	w := &watcher{t: t}
	r, _ := start(t, brokers, t.TempDir(), nil, w)

	recreate(t, brokers, u1)
	recent := records(u1, "new", 60)
	produce(t, brokers, recent)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		diff, err := servedOf(r, u1, old, recent)
		if err == nil && diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the changelog was recreated: %s %v", diff, err)
		}
	}
	if err := r.Ready(context.Background()); err != nil {
		t.Errorf("not ready after reading the recreated changelog: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.dropped, []online.Table{u1}) {
		t.Errorf("told of %v dropped, want %v", w.dropped, u1)
	}
}

// watcher records what a replica tells its watcher, and what Get returned
// for each changed record as it was told.
type watcher struct {
	t       *testing.T
	mu      sync.Mutex
	seen    []online.Record
	dropped []online.Table
}

func (w *watcher) watch(r *pebble.Replica) {
	r.Watch(func(t online.Table, key string) {
		got, err := storetest.GetAll(context.Background(), r, t, []string{key})
		if err != nil {
			w.t.Errorf("Get %s %q as told of its change: %v", t, key, err)
		}
		w.mu.Lock()
		w.seen = append(w.seen, online.Record{Table: t, Key: key, Value: got[0]})
		w.mu.Unlock()
	}, func(t online.Table) {
		w.mu.Lock()
		w.dropped = append(w.dropped, t)
		w.mu.Unlock()
	})
}

// A watcher is told of every change, once Get sees it: serve's state cache
// keeps an entity's state until then.
func TestReplicaWatch(t *testing.T) {
	brokers := broker(t)
	u1, m := tables[0], tables[2]
	produce(t, brokers, []online.Record{{Table: u1, Key: "a", Value: []byte("a1")}, {Table: u1, Key: "b", Value: []byte("b1")}})
	w := &watcher{t: t}
	start(t, brokers, t.TempDir(), nil, w)
	want := []online.Record{{Table: u1, Key: "a", Value: []byte("a1")}, {Table: u1, Key: "b", Value: []byte("b1")}}

	next := []online.Record{{Table: u1, Key: "a", Value: []byte("a2")}, {Table: u1, Key: "b"}, {Table: m, Key: "a", Value: []byte("m1")}}
	produce(t, brokers, next)
	want = append(want, next...)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.seen)
		w.mu.Unlock()
		if n >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("told of %d changes, want %d", n, len(want))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Partitions are applied in any order; a key's changes in order.
	byKey := func(a, b online.Record) int {
		return cmp.Or(strings.Compare(a.Table.String(), b.Table.String()), strings.Compare(a.Key, b.Key))
	}
	slices.SortStableFunc(w.seen, byKey)
	slices.SortStableFunc(want, byKey)
	if len(w.seen) != len(want) {
		t.Fatalf("told of %v, want %v", w.seen, want)
	}
	for i := range want {
		if w.seen[i].Table != want[i].Table || w.seen[i].Key != want[i].Key || !bytes.Equal(w.seen[i].Value, want[i].Value) {
			t.Errorf("change %d: told of %s %q when Get returned %q; want %s %q with %q", i, w.seen[i].Table, w.seen[i].Key, w.seen[i].Value, want[i].Table, want[i].Key, want[i].Value)
		}
	}
	if len(w.dropped) > 0 {
		t.Errorf("told of tables dropped: %v", w.dropped)
	}
}

// A broker that fails to list the changelogs' end offsets for a while (a
// leader election, a broker restarting) does not end Run: the replica waits,
// not ready and saying why, and catches up once the broker answers.
func TestReplicaEndOffsetsError(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopics(t, brokers)
	produce(t, brokers, []online.Record{{Table: tables[0], Key: "a", Value: []byte("a1")}})
	failed := 0
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if failed == 2 {
			return nil, nil, false
		}
		failed++
		return ingesttest.ListOffsetsAnswer(req.(*kmsg.ListOffsetsRequest), func(string, int32) (int64, int16) { return -1, kerr.UnknownServerError.Code }), nil, true
	})
	r, err := pebble.Open(pebble.Config{Brokers: brokers, TopicPrefix: "test", Tables: tables, Dir: t.TempDir(), CacheBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); r.Ready(ctx) != nil; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("Run ended on a broker's error: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 20s: %v", r.Ready(ctx))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := storetest.GetAll(context.Background(), r, tables[0], []string{"a"})
	if err != nil || string(got[0]) != "a1" {
		t.Errorf("got %q, %v; want a1", got, err)
	}
}

// A tombstone that compaction removed while the replica was down (the
// changelog keeps tombstones for delete.retention.ms) does not leave the
// replica serving the record it deleted: the replica reads the changelog
// again from its start.
func TestReplicaTombstoneCompactedWhileDown(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	// One partition each, so that the records below are batches of one log.
	compact, retention := "compact", "0"
	for _, tb := range tables {
		if _, err := adm.CreateTopic(context.Background(), 1, -1, map[string]*string{"cleanup.policy": &compact, "delete.retention.ms": &retention}, online.ChangelogTopic("test", tb)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	u1 := tables[0]
	produce(t, brokers, []online.Record{{Table: u1, Key: "a", Value: []byte("a1")}, {Table: u1, Key: "b", Value: []byte("b1")}})
	r, stop := start(t, brokers, dir, nil)
	stop()
	r.Close()

	produce(t, brokers, []online.Record{{Table: u1, Key: "a"}})
	produce(t, brokers, []online.Record{{Table: u1, Key: "z", Value: []byte("z1")}})
	c.Compact() // a1 and its tombstone go: only b1 and z1 are left

	r, _ = start(t, brokers, dir, nil)
	got, err := storetest.GetAll(context.Background(), r, u1, []string{"a", "b", "z"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != nil || string(got[1]) != "b1" || string(got[2]) != "z1" {
		t.Errorf("got %q, want a deleted, b1, z1", got)
	}
}

// A second process opening a replica's directory is refused with an error
// that says the directory is in use, and by what it is named.
func TestReplicaDirInUse(t *testing.T) {
	if dir := os.Getenv("QUIVER_TEST_REPLICA_DIR"); dir != "" {
		// The second process.
		_, err := pebble.Open(pebble.Config{Brokers: []string{"127.0.0.1:1"}, Tables: tables, Dir: dir, CacheBytes: 8 << 20})
		fmt.Printf("open: %v\n", err)
		return
	}
	dir := t.TempDir()
	r, err := pebble.Open(pebble.Config{Brokers: []string{"127.0.0.1:1"}, Tables: tables, Dir: dir, CacheBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaDirInUse$")
	cmd.Env = append(os.Environ(), "QUIVER_TEST_REPLICA_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	if !strings.Contains(line, dir) || !strings.Contains(line, "another process") {
		t.Errorf("second process: %s; want an error naming %s and saying another process uses it", line, dir)
	}
}

// The lag metric is a changelog's records yet to apply, over all its
// partitions, from the start: here, while no fetch is answered, every
// record produced; then none once applied. The replica is ready (1) only
// then.
func TestReplicaLag(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopics(t, brokers)
	u1 := tables[0]
	var records []online.Record
	for i := range 20 { // over the changelog's three partitions
		records = append(records, online.Record{Table: u1, Key: fmt.Sprintf("k%d", i), Value: []byte("v")})
	}
	produce(t, brokers, records)
	var stalled sync.Mutex // held: fetches are answered with nothing
	stalled.Lock()
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !stalled.TryLock() {
			return kreq.ResponseKind(), nil, true
		}
		stalled.Unlock()
		return nil, nil, false
	})
	reg := prometheus.NewRegistry()
	r, err := pebble.Open(pebble.Config{Brokers: brokers, TopicPrefix: "test", Tables: tables, Dir: t.TempDir(), CacheBytes: 8 << 20, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done; r.Close() }()
	lag := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "quiver_serve_replica_lag_records" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == online.ChangelogTopic("test", u1) {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	waitLag := func(want float64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); lag() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("lag %v, want %v", lag(), want)
			}
		}
	}
	ready := func() float64 { return gauge(t, reg, "quiver_serve_replica_ready") }
	waitLag(20)
	if v := ready(); v != 0 {
		t.Errorf("ready %v while catching up, want 0", v)
	}
	stalled.Unlock()
	waitLag(0)
	for deadline := time.Now().Add(10 * time.Second); ready() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ready %v once caught up, want 1", ready())
		}
	}
}

// gauge returns the value of the gauge name, of no labels, in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestReplicaStaleness: a replica whose fetches bring nothing while its
// changelogs grow (a broker it cannot fetch from) keeps its last lag, but
// its staleness grows from when it last held everything, and falls back
// once it has caught up again.
func TestReplicaStaleness(t *testing.T) {
	c := newCluster(t)
	brokers := c.ListenAddrs()
	createTopics(t, brokers)
	reg := prometheus.NewRegistry()
	start(t, brokers, t.TempDir(), reg)
	staleness := func() float64 { return gauge(t, reg, "quiver_serve_replica_staleness_seconds") }
	waitCurrent := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); staleness() > 3; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("staleness %.1f s of a replica that holds everything, want at most 3 s (a recheck every 2 s)", staleness())
			}
		}
	}
	waitCurrent()

	var stalled atomic.Bool
	stalled.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return kreq.ResponseKind(), nil, stalled.Load() // an empty answer
	})
	produce(t, brokers, []online.Record{{Table: tables[0], Key: "k", Value: []byte("v")}})
	time.Sleep(5 * time.Second)
	if s := staleness(); s < 4 {
		t.Errorf("staleness %.1f s after 5 s of fetches that bring nothing, want at least 4 s", s)
	}
	stalled.Store(false)
	waitCurrent()
}
