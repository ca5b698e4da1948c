// Package ingesttest is what the tests of ingest share: a stream of fraud
// transactions with bad records among them, the results computed straight
// from the engine for reference, and ways to read back what ingest wrote to
// Kafka and to the offline store.
package ingesttest

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingest"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// Txn is one record of the stream, and whether ingest must accept it.
type Txn struct {
	Key, Value string
	Valid      bool
	Reason     string    // the DLQ reason of an invalid one
	Produced   time.Time // the record's timestamp; zero for the time of producing
}

// Start is the event time of a stream's first transaction.
var Start = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// Stream makes n valid transactions of 40 users at 25 merchants, two
// seconds of event time apart, one in ten out of order within the allowed
// lateness, with one record of each kind that ingest must dead-letter:
// invalid JSON, schema violations (a string amount, an event time past
// year 9999), a missing event time, a late event, no join key at all; and
// one valid transaction without a merchant.
func Stream(seed uint64, n int) []Txn { return StreamFrom(seed, n, Start) }

// StreamFrom is Stream with its first event at start.
func StreamFrom(seed uint64, n int, start time.Time) []Txn {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []Txn
	for i := range n {
		at := start.Add(time.Duration(i) * 2 * time.Second)
		if rng.IntN(10) == 0 {
			at = at.Add(-time.Duration(rng.IntN(20)) * time.Minute)
		}
		user := fmt.Sprintf("u%03d", rng.IntN(40))
		v := fmt.Sprintf(`{"txn_id":"t%d","user_id":%q,"merchant_id":"m%02d","amount":%.2f,"country":%q,"ts":%q}`,
			i, user, rng.IntN(25), float64(rng.IntN(50000))/100-20, []string{"DE", "FR", "US"}[rng.IntN(3)], at.Format(time.RFC3339Nano))
		out = append(out, Txn{Key: user, Value: v, Valid: true})
		switch i {
		case n / 10: // one entity's key: the user's views take it, the merchant's cannot
			out = append(out, Txn{Key: user, Value: fmt.Sprintf(`{"txn_id":"n%d","user_id":%q,"merchant_id":null,"amount":7.25,"ts":%q}`, i, user, at.Format(time.RFC3339Nano)), Valid: true})
		case 7 * n / 10: // no entity's key: no view can take it
			out = append(out, Txn{Key: user, Value: fmt.Sprintf(`{"txn_id":"k%d","amount":7.25,"ts":%q}`, i, at.Format(time.RFC3339Nano)), Reason: ingest.ReasonMissingKey})
		case n / 5:
			out = append(out, Txn{Key: user, Value: `{"txn_id": "broken`, Reason: features.ReasonInvalidJSON})
		case 2 * n / 5:
			out = append(out, Txn{Key: user, Value: `{"txn_id":"x","user_id":"u001","amount":"12.50","ts":"2026-11-20T01:00:00Z"}`, Reason: features.ReasonSchema})
		case 3 * n / 10: // year 10000: no date partition of the offline log names it
			out = append(out, Txn{Key: user, Value: `{"txn_id":"w","user_id":"u001","amount":1.5,"ts":253402300800000}`, Reason: features.ReasonSchema})
		case 3 * n / 5:
			out = append(out, Txn{Key: user, Value: `{"txn_id":"y","user_id":"u001","amount":1.5}`, Reason: features.ReasonMissingEventTime})
		case 4 * n / 5:
			late := at.Add(-3 * time.Hour)
			out = append(out, Txn{Key: user, Value: fmt.Sprintf(`{"txn_id":"z","user_id":%q,"amount":3,"ts":%q}`, user, late.Format(time.RFC3339)), Reason: features.ReasonLate})
		}
	}
	return out
}

// Produce writes the stream to topic, keyed by user, with a client of more
// options opts.
func Produce(t testing.TB, brokers []string, topic string, txns []Txn, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(txns))
	for i, x := range txns {
		recs[i] = &kgo.Record{Key: []byte(x.Key), Value: []byte(x.Value), Timestamp: x.Produced}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Topics are the topics ingest of the fraud example consumes.
var Topics = []string{"transactions", "quiver.repartition.user", "quiver.repartition.merchant"}

// CaughtUp reports whether the group has committed everything in topics.
//
// Commits are read before end offsets: stage one re-keys an event before it
// commits the event's offset, so when the source is committed to its end,
// every re-keyed record already exists when the end offsets are read.
func CaughtUp(ctx context.Context, adm *kadm.Client, group string, topics ...string) (bool, error) {
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return false, err
	}
	behind := false
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if o.Err != nil || (o.Offset > 0 && (!ok || c.At < o.Offset)) {
			behind = true
		}
	})
	return !behind, nil
}

// WaitCaughtUp waits until the group has committed everything in the fraud
// example's source and repartition topics.
func WaitCaughtUp(t testing.TB, brokers []string, group string, timeout time.Duration) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok, _ := CaughtUp(context.Background(), adm, group, Topics...); ok {
			return
		}
	}
	t.Fatalf("ingest did not catch up within %s", timeout)
}

// ConsumeAll reads a topic from the start to its current end.
func ConsumeAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for int64(len(out)) < want {
		f := cl.PollFetches(ctx)
		if err := f.Err0(); err != nil {
			t.Fatalf("consume %s: %v (have %d of %d)", topic, err, len(out), want)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// Changelog returns the latest record of each entity in a changelog, as it
// is now.
func Changelog(t testing.TB, brokers []string, topic string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := replay.ScanChangelog(context.Background(), []kgo.Opt{kgo.SeedBrokers(brokers...)}, topic, func(key, value []byte) {
		if value == nil {
			delete(out, string(key))
		} else {
			out[string(key)] = value
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Header returns a record header's value.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// CheckDLQ checks that the DLQ holds exactly the stream's bad records, each
// with its reason.
func CheckDLQ(t testing.TB, brokers []string, txns []Txn) {
	t.Helper()
	var got, want []string
	for _, r := range ConsumeAll(t, brokers, "quiver.dlq") {
		got = append(got, Header(r, "quiver-reason")+" "+string(r.Value))
	}
	for _, x := range txns {
		if !x.Valid {
			want = append(want, x.Reason+" "+x.Value)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("DLQ holds\n%s\nwant\n%s", got, want)
	}
}

// Check compares everything ingest wrote with what the engine computes from
// the valid transactions: each entity's state in the changelog (evaluated,
// and byte for byte), and the offline event and feature logs row for row.
func Check(t testing.TB, brokers []string, defs *features.Definitions, txns []Txn, offlineRoot string) {
	t.Helper()
	src := defs.Source("transactions")
	at := int64(0) // evaluate at the latest event, where windows still hold something
	for _, x := range txns {
		var ev features.Event
		if x.Valid && src.DecodeJSON([]byte(x.Value), &ev) == nil {
			at = max(at, ev.Time)
		}
	}
	refs := Reference(t, defs, txns)
	for _, v := range []string{"user_txn", "merchant_txn"} {
		eng, want := refs.Engines[v+"@1"], refs.States[v+"@1"]
		got := map[string][]byte{}
		for _, r := range ConsumeAll(t, brokers, "quiver.changelog."+v+".v1") {
			got[string(r.Key)] = r.Value
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d entities in the changelog, want %d", v, len(got), len(want))
		}
		for _, key := range slices.Sorted(maps.Keys(want)) {
			rec, ok := got[key]
			if !ok {
				t.Errorf("%s: no state for %s", v, key)
				continue
			}
			st, _, err := online.DecodeState(eng, rec)
			if err != nil {
				t.Fatalf("%s %s: %v", v, key, err)
			}
			g, w := evaluate(t, eng, st, at), evaluate(t, eng, want[key], at)
			for i := range w {
				if !g[i].Equal(w[i]) {
					t.Errorf("%s %s: %s = %v, want %v", v, key, eng.View().Features[i].Name, g[i], w[i])
				}
			}
		}
	}

	// The event log holds each valid event once; each feature log one row
	// per event its view applied (the fraud views keep amount > 0, of
	// events with their entity's key).
	views := []string{"user_txn", "merchant_txn"}
	valid, applied := map[string]bool{}, map[string]int{}
	for _, x := range txns {
		if x.Valid {
			var ev features.Event
			if err := src.DecodeJSON([]byte(x.Value), &ev); err != nil {
				t.Fatal(err)
			}
			valid[ev.Fields[src.Field("txn_id")].Str()] = true
			for _, v := range views {
				key := ev.Fields[src.Field(defs.Entity(defs.View(v, 1).Entity).JoinKeys[0])]
				if ev.Fields[src.Field("amount")].Float() > 0 && !key.IsNull() {
					applied[v]++
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, row := range ReadLog(t, filepath.Join(offlineRoot, "events", "transactions")) {
		id := row[src.Field("txn_id")].Str()
		if !valid[id] || seen[id] {
			t.Fatalf("event log: unexpected or repeated transaction %s", id)
		}
		seen[id] = true
	}
	if len(seen) != len(valid) {
		t.Errorf("event log has %d transactions, want %d", len(seen), len(valid))
	}
	for _, view := range views {
		if rows := ReadLog(t, filepath.Join(offlineRoot, "features", view, "v1")); len(rows) != applied[view] {
			t.Errorf("%s feature log has %d rows, want %d", view, len(rows), applied[view])
		}
	}
}

// Ref is the engine's reference: each view's state of each entity after the
// valid transactions of a stream.
type Ref struct {
	Engines map[string]*features.Engine           // by view ref, "user_txn@1"
	States  map[string]map[string]*features.State // view ref → entity key → state
}

// Reference applies the valid transactions to every view of defs with the
// engine directly, in stream order.
func Reference(t testing.TB, defs *features.Definitions, txns []Txn) Ref {
	t.Helper()
	src := defs.Source("transactions")
	r := Ref{Engines: map[string]*features.Engine{}, States: map[string]map[string]*features.State{}}
	for _, v := range defs.Views {
		eng, err := features.NewEngine(defs, v)
		if err != nil {
			t.Fatal(err)
		}
		key := src.Field(defs.Entity(v.Entity).JoinKeys[0])
		states := map[string]*features.State{}
		for i, x := range txns {
			if !x.Valid {
				continue
			}
			var ev features.Event
			if err := src.DecodeJSON([]byte(x.Value), &ev); err != nil {
				t.Fatal(err)
			}
			ev.Offset = int64(i)
			if ev.Fields[key].IsNull() {
				continue // not this entity's event
			}
			k := ev.Fields[key].Str()
			if states[k] == nil {
				states[k] = eng.NewState()
			}
			if _, err := eng.Apply(states[k], &ev); err != nil {
				t.Fatal(err)
			}
		}
		r.Engines[v.Ref()], r.States[v.Ref()] = eng, states
	}
	return r
}

func evaluate(t testing.TB, eng *features.Engine, st *features.State, at int64) []features.Value {
	t.Helper()
	out := make([]features.Value, len(eng.View().Features))
	if err := eng.Evaluate(st, at, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Snapshot is everything ingest wrote, in a form two runs can be compared
// in: the latest changelog value per entity, byte for byte; the event log's
// rows; and which events each feature log recorded (entity and event time).
// A feature log's values are not compared: they are the features as of each
// event, and an entity fed from several source partitions sees their events
// interleaved differently from run to run, crash or not. Final states do not
// depend on that order, and are compared byte for byte.
type Snapshot struct {
	Changelogs map[string]map[string]string // topic → entity → state record
	Logs       map[string][]string          // log directory → rows
}

// Take snapshots what ingest of the fraud example wrote.
func Take(t testing.TB, brokers []string, offlineRoot string) Snapshot {
	t.Helper()
	s := Snapshot{Changelogs: map[string]map[string]string{}, Logs: map[string][]string{}}
	for _, view := range []string{"user_txn", "merchant_txn"} {
		topic := "quiver.changelog." + view + ".v1"
		s.Changelogs[topic] = map[string]string{}
		for _, r := range ConsumeAll(t, brokers, topic) {
			s.Changelogs[topic][string(r.Key)] = string(r.Value)
		}
	}
	for _, dir := range []string{"events/transactions", "features/user_txn/v1", "features/merchant_txn/v1"} {
		var rows []string
		for _, r := range ReadLog(t, filepath.Join(offlineRoot, dir)) {
			if strings.HasPrefix(dir, "features/") {
				r = r[:2] // the fraud views' join key and _event_time
			}
			rows = append(rows, fmt.Sprint(r))
		}
		slices.Sort(rows)
		s.Logs[dir] = rows
	}
	return s
}

// Diff describes the first difference between two snapshots; "" if none.
func (s Snapshot) Diff(o Snapshot) string {
	for topic, m := range s.Changelogs {
		if len(m) != len(o.Changelogs[topic]) {
			return fmt.Sprintf("%s: %d entities, other %d", topic, len(m), len(o.Changelogs[topic]))
		}
		for k, v := range m {
			if o.Changelogs[topic][k] != v {
				return fmt.Sprintf("%s: entity %s's state differs", topic, k)
			}
		}
	}
	for dir, rows := range s.Logs {
		if !slices.Equal(rows, o.Logs[dir]) {
			return fmt.Sprintf("%s: %d rows, other %d, or rows differ", dir, len(rows), len(o.Logs[dir]))
		}
	}
	return ""
}

// ReadLog reads every row of every Parquet file below dir.
func ReadLog(t testing.TB, dir string) [][]features.Value {
	t.Helper()
	var rows [][]features.Value
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".parquet" || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		_, r, _, err := offline.ReadFile(path)
		rows = append(rows, r...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// WriteLog writes events of src, each a JSON record value, to the offline
// store's event log as ingest does: one batch at offsets 0, 1, ... of the
// source's partition.
func WriteLog(t testing.TB, off *offline.Dir, src *features.Source, partition int32, events ...string) {
	t.Helper()
	b := offline.Batch{Dir: "events/" + src.Name, Columns: offline.EventColumns(src), TimeColumn: len(src.Schema),
		Stream: fmt.Sprintf("%s/%d", src.Topic, partition), LastOffset: int64(len(events) - 1)}
	for i, e := range events {
		var ev features.Event
		if err := src.DecodeJSON([]byte(e), &ev); err != nil {
			t.Fatalf("event %s: %v", e, err)
		}
		b.Rows = append(b.Rows, append(ev.Fields, features.Timestamp(ev.Time), features.String(src.Topic), features.Int(int64(partition)), features.Int(int64(i))))
	}
	if err := off.WriteBatch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// ListOffsetsAnswer is a response to req, for a broker's test hook (kfake's
// ControlKey) to answer with: each partition's offset and error code as
// answer gives them.
func ListOffsetsAnswer(req *kmsg.ListOffsetsRequest, answer func(topic string, partition int32) (offset int64, code int16)) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Version = req.Version
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = p.Partition
			rp.Offset, rp.ErrorCode = answer(t.Topic, p.Partition)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
