package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/internal/kafkaclient"
	"github.com/quiver-ml/quiver/store/online"
)

// Config configures a Replica.
type Config struct {
	Brokers     []string       // required
	KafkaOpts   []kgo.Opt      // TLS and SASL, for every Kafka client
	TopicPrefix string         // prefix of the changelog topics; default "quiver"
	Tables      []online.Table // the view versions to replicate; required
	Dir         string         // the Pebble database; required
	CacheBytes  int64          // block cache; default 128 MiB
	Logger      *slog.Logger   // nil discards
	Registerer  prometheus.Registerer
}

// kafka returns the options of a Kafka client: the brokers, KafkaOpts,
// then extra.
func (c *Config) kafka(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.KafkaOpts, extra)
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("pebble replica: no brokers"))
	}
	if len(c.Tables) == 0 {
		errs = append(errs, errors.New("pebble replica: no tables"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("pebble replica: no directory"))
	}
	return errors.Join(errs...)
}

func (c *Config) ensureDefaults() {
	if c.TopicPrefix == "" {
		c.TopicPrefix = "quiver"
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 128 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Replica is a local copy of the changelog topics. Run keeps it current;
// Get reads it.
type Replica struct {
	cfg      Config
	db       *pebble.DB
	topics   map[string]online.Table // by changelog topic
	state    atomic.Pointer[error]
	watch    atomic.Pointer[watch]
	lag      *prometheus.GaugeVec
	applied  prometheus.Counter
	current  atomic.Int64 // when the replica last held all of the changelogs (Unix ns)
	closed   sync.RWMutex // held for reading by Get, for writing by Close
	done     bool
	caughtUp bool // Run's: it has caught up once, and stays ready
}

var _ online.Watched = (*Replica)(nil)

type watch struct {
	changed func(online.Table, string)
	dropped func(online.Table)
}

// Watch implements online.Watched.
func (r *Replica) Watch(changed func(t online.Table, key string), dropped func(t online.Table)) {
	r.watch.Store(&watch{changed, dropped})
}

// errStarting is the readiness of a replica whose Run has not yet looked at
// the changelogs.
var errStarting = errors.New("pebble replica: not started")

// Open opens (or creates) the replica's database. Call Run to fill it.
func Open(cfg Config) (*Replica, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(cfg.Dir, &pebble.Options{Cache: cache, FormatMajorVersion: pebble.FormatNewest, Logger: Logger(cfg.Logger)})
	if errors.Is(err, syscall.EAGAIN) { // the directory's lock, held by another process
		return nil, fmt.Errorf("open replica %s: in use by another process (each serve replica needs a data directory of its own): %w", cfg.Dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", cfg.Dir, err)
	}
	r := &Replica{cfg: cfg, db: db, topics: map[string]online.Table{}}
	for _, t := range cfg.Tables {
		r.topics[online.ChangelogTopic(cfg.TopicPrefix, t)] = t
	}
	r.state.Store(&errStarting)
	r.current.Store(time.Now().UnixNano())
	r.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "quiver_serve_replica_lag_records",
		Help: "Changelog records the replica has yet to apply, by topic (the sum of its partitions').",
	}, []string{"topic"})
	r.applied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "quiver_serve_replica_records_applied_total",
		Help: "Changelog records applied to the replica.",
	})
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quiver_serve_replica_ready",
		Help: "1 once the replica has caught up with the changelogs and answers lookups, 0 while it starts.",
	}, func() float64 {
		if r.Ready(context.Background()) != nil {
			return 0
		}
		return 1
	})
	// Lag counts what fetches have told; a replica cut off from Kafka
	// fetches nothing, and keeps its last lag.
	staleness := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quiver_serve_replica_staleness_seconds",
		Help: "Seconds since the replica was last seen to hold every record of the changelogs (their ends are listed every 2 s): it grows while the replica cannot reach Kafka or keep up, and while it starts.",
	}, func() float64 { return time.Since(time.Unix(0, r.current.Load())).Seconds() })
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lag, r.applied, ready, staleness} {
			if err := cfg.Registerer.Register(c); err != nil {
				db.Close()
				return nil, fmt.Errorf("register replica metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Keys: "r\x00<view@version>\x00<entity>" for records,
// "o\x00<topic>\x00<partition>" for the next offset to apply,
// "i\x00<topic>" for the ID of the topic the offsets belong to.
func recordKey(dst []byte, table, entity string) []byte {
	dst = append(append(append(dst, "r\x00"...), table...), 0)
	return append(dst, entity...)
}

func offsetKey(topic string, partition int32) []byte {
	return binary.BigEndian.AppendUint32(append(append([]byte("o\x00"), topic...), 0), uint32(partition))
}

func idKey(topic string) []byte { return append([]byte("i\x00"), topic...) }

// Get implements online.Store. One key is a point read. Several are read
// through one iterator, from one view of the database, which keeps its
// place in each level from one key to the next: from two keys on, that
// takes less than a point read per key (100 keys, about half).
func (r *Replica) Get(_ context.Context, t online.Table, keys []string, fn func(int, []byte) error) error {
	r.closed.RLock()
	defer r.closed.RUnlock()
	if r.done {
		return online.ErrClosed
	}
	table := t.String()
	if len(keys) == 1 {
		v, closer, err := r.db.Get(recordKey(nil, table, keys[0]))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s %q: %w", table, keys[0], err)
		}
		defer closer.Close()
		return fn(0, v)
	}
	it, err := r.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	defer it.Close()
	var key []byte
	for i, k := range keys {
		key = recordKey(key[:0], table, k)
		// The default comparer's prefix is the whole key: the seek finds
		// the key or nothing.
		if !it.SeekPrefixGE(key) {
			if err := it.Error(); err != nil {
				return fmt.Errorf("read %s %q: %w", table, k, err)
			}
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read %s %q: %w", table, k, err)
		}
		if err := fn(i, v); err != nil {
			return err
		}
	}
	return it.Error()
}

// Ready implements online.Store: nil once Run has caught up with the
// changelogs as they were when it started.
func (r *Replica) Ready(context.Context) error { return *r.state.Load() }

func (r *Replica) setState(err error) { r.state.Store(&err) }

// Close closes the database. Call it after Run has returned.
func (r *Replica) Close() error {
	r.closed.Lock()
	defer r.closed.Unlock()
	if r.done {
		return nil
	}
	r.done = true
	return r.db.Close()
}

// Run applies the changelogs until ctx ends: first up to their ends as they
// are now (then Ready turns nil), then whatever ingest writes next. It waits
// for changelog topics that do not exist yet. A changelog deleted and
// created again while it runs is read again from its start.
func (r *Replica) Run(ctx context.Context) error {
	admClient, err := kgo.NewClient(r.cfg.kafka(kgo.MetadataMinAge(250 * time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("connect to kafka: %w", err)
	}
	adm := kadm.NewClient(admClient)
	defer adm.Close()
	for {
		err := r.run(ctx, adm)
		if !errors.Is(err, errRecreated) {
			return err
		}
		r.cfg.Logger.Warn("changelog recreated while running: restarting the replica's consumer")
	}
}

// errRecreated ends run when a changelog's topic ID changes.
var errRecreated = errors.New("pebble replica: changelog recreated")

// recheckEvery is how often run looks for a changelog that was recreated.
const recheckEvery = 2 * time.Second

// run is one pass of Run, with one consumer: it ends with errRecreated when
// a changelog was deleted and created again, for Run to start over.
func (r *Replica) run(ctx context.Context, adm *kadm.Client) error {
	details, err := r.waitForTopics(ctx, adm)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	partitions := details.TopicsSet()
	ends, err := r.endOffsets(ctx, adm, partitions.Topics())
	if err != nil {
		return nil // ctx ended
	}
	start := map[string]map[int32]kgo.Offset{}
	var nextMu sync.Mutex                  // the consumer's writes of next, the recheck's reads
	next := map[string]map[int32]int64{}   // the next offset to apply
	target := map[string]map[int32]int64{} // where the bootstrap ends
	for topic, parts := range partitions {
		start[topic], next[topic], target[topic] = map[int32]kgo.Offset{}, map[int32]int64{}, map[int32]int64{}
		for p := range parts {
			o, err := r.appliedOffset(topic, p)
			if err != nil {
				return err
			}
			end, ok := ends.Lookup(topic, p)
			if !ok || end.Err != nil {
				return fmt.Errorf("changelog %s/%d end offset: %v", topic, p, end.Err)
			}
			next[topic][p], target[topic][p] = o, end.Offset
		}
		// A topic ID other than the one the offsets belong to means the
		// topic was deleted and created again (a view version reset):
		// what the replica holds of it is stale. So does an offset past a
		// partition's end, which a broker without topic IDs (all zero)
		// leaves as the only sign. No stored ID (a replica of an older
		// version, or a new one) is unknown: the current ID is adopted.
		id := details[topic].ID
		stored, err := r.topicID(topic)
		if err != nil {
			return err
		}
		recreated := stored != (kadm.TopicID{}) && id != (kadm.TopicID{}) && stored != id
		for p := range parts {
			recreated = recreated || next[topic][p] > target[topic][p]
		}
		// Records the replica has not applied that are older than the
		// changelog keeps tombstones may have lost theirs to compaction:
		// the records those deleted would stay in the replica for good.
		gone := false
		if recreated {
			r.cfg.Logger.Warn("changelog recreated: dropping the replica's copy", "topic", topic, "id", id)
		} else if gone = r.tombstonesGone(ctx, adm, topic, next[topic], target[topic]); gone {
			r.cfg.Logger.Warn("replica down longer than the changelog keeps tombstones (delete.retention.ms): reading it again from its start", "topic", topic)
		}
		switch {
		case recreated || gone:
			if err := r.reset(topic, id); err != nil {
				return err
			}
			for p := range parts {
				next[topic][p] = 0
			}
		case id != (kadm.TopicID{}) && stored != id:
			if err := r.db.Set(idKey(topic), id[:], pebble.Sync); err != nil {
				return fmt.Errorf("store changelog %s topic id: %w", topic, err)
			}
		}
		for p := range parts {
			start[topic][p] = kgo.NewOffset().At(next[topic][p])
		}
	}
	cl, err := kgo.NewClient(r.cfg.kafka(kgo.ConsumePartitions(start), kgo.FetchMaxWait(50*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("connect to kafka: %w", err)
	}
	defer func() {
		if err := kafkaclient.Close(cl); err != nil {
			r.cfg.Logger.Warn("replica stopping", "err", err)
		}
	}()

	// Each changelog's lag is the sum of its partitions'; they are known
	// from the start, and kept as fetches tell the partitions' ends.
	lag := map[string]map[int32]int64{}
	setLag := func(topic string, p int32, n int64) {
		lag[topic][p] = max(0, n)
		var sum int64
		for _, n := range lag[topic] {
			sum += n
		}
		r.lag.WithLabelValues(topic).Set(float64(sum))
	}
	for topic, parts := range target {
		lag[topic] = map[int32]int64{}
		for p, end := range parts {
			setLag(topic, p, end-next[topic][p])
		}
	}
	behind := func() int64 {
		var n int64
		for topic, parts := range target {
			for p, end := range parts {
				n += max(0, end-next[topic][p])
			}
		}
		return n
	}
	n := behind()
	r.cfg.Logger.Info("replica catching up", "topics", len(start), "records", n)
	began := time.Now()
	if !r.caughtUp {
		r.caughtUp = n == 0
		if r.caughtUp {
			r.setState(nil)
		} else {
			r.setState(fmt.Errorf("pebble replica: catching up, %d changelog records behind", n))
		}
	}

	// The consumer never adopts a recreated topic's new ID (its fetches
	// fail with UNKNOWN_TOPIC_ID), so a recreated changelog is found by
	// its ID and consumed by a new consumer.
	ids := map[string]kadm.TopicID{}
	for topic := range partitions {
		ids[topic] = details[topic].ID
	}
	consume, stop := context.WithCancelCause(ctx)
	rechecked := make(chan struct{})
	defer func() { stop(nil); <-rechecked }()
	// holdsAll reports whether the replica has applied everything up to
	// ends.
	holdsAll := func(ends kadm.ListedOffsets) bool {
		nextMu.Lock()
		defer nextMu.Unlock()
		all := true
		ends.Each(func(o kadm.ListedOffset) {
			all = all && o.Err == nil && next[o.Topic][o.Partition] >= o.Offset
		})
		return all
	}
	go func() {
		defer close(rechecked)
		r.recheck(consume, adm, ids, stop, holdsAll)
	}()
	var key []byte
	type change struct {
		table online.Table
		key   string
	}
	var changes []change // the batch's, when watched
	for {
		fetches := cl.PollFetches(consume)
		if ctx.Err() != nil {
			return nil
		}
		if consume.Err() != nil {
			return context.Cause(consume)
		}
		// The client retries what can be retried; what it reports is
		// logged, and the partition's fetch goes on.
		fetches.EachError(func(t string, p int32, err error) {
			r.cfg.Logger.Warn("changelog fetch", "topic", t, "partition", p, "err", err)
		})
		b := r.db.NewBatch()
		w := r.watch.Load()
		changes = changes[:0]
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				if p.Err == nil {
					setLag(p.Topic, p.Partition, p.HighWatermark-next[p.Topic][p.Partition])
				}
				return
			}
			t := r.topics[p.Topic]
			table := t.String()
			for _, rec := range p.Records {
				key = recordKey(key[:0], table, string(rec.Key))
				if w != nil {
					changes = append(changes, change{t, string(rec.Key)})
				}
				if rec.Value == nil {
					_ = b.Delete(key, nil) // a tombstone; a batch fails only when closed
				} else {
					_ = b.Set(key, rec.Value, nil)
				}
			}
			r.applied.Add(float64(len(p.Records)))
			o := p.Records[len(p.Records)-1].Offset + 1
			nextMu.Lock()
			next[p.Topic][p.Partition] = o
			nextMu.Unlock()
			_ = b.Set(offsetKey(p.Topic, p.Partition), binary.BigEndian.AppendUint64(nil, uint64(o)), nil)
			setLag(p.Topic, p.Partition, p.HighWatermark-o)
		})
		// NoSync: the batch is atomic in the write-ahead log, so a crash
		// loses a suffix of batches, records and offsets alike, and the
		// restart re-applies it.
		if err := b.Commit(pebble.NoSync); err != nil {
			b.Close()
			return fmt.Errorf("apply changelog: %w", err)
		}
		b.Close()
		for _, c := range changes {
			w.changed(c.table, c.key)
		}
		if !r.caughtUp {
			if n := behind(); n > 0 {
				r.setState(fmt.Errorf("pebble replica: catching up, %d changelog records behind", n))
			} else {
				r.caughtUp = true
				r.setState(nil)
				r.cfg.Logger.Info("replica caught up", "took", time.Since(began).Round(time.Millisecond))
			}
		}
	}
}

// recheck looks at the changelogs every recheckEvery until ctx ends. It
// calls stop with errRecreated once a changelog has a topic ID other than
// the one in ids; a changelog that is missing (deleted, not yet created
// again) is not a change: the replica keeps serving its copy until the new
// topic exists. And it lists their end offsets: when holdsAll says the
// replica had applied up to them, the replica was current as of the
// listing.
func (r *Replica) recheck(ctx context.Context, adm *kadm.Client, ids map[string]kadm.TopicID, stop context.CancelCauseFunc, holdsAll func(kadm.ListedOffsets) bool) {
	topics := slices.Sorted(maps.Keys(ids))
	tick := time.NewTicker(recheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		asOf := time.Now()
		details, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			continue // the next tick tries again
		}
		for _, d := range details {
			if d.Err == nil && d.ID != (kadm.TopicID{}) && ids[d.Topic] != (kadm.TopicID{}) && d.ID != ids[d.Topic] {
				stop(errRecreated)
				return
			}
		}
		if ends, err := adm.ListEndOffsets(ctx, topics...); err == nil && holdsAll(ends) {
			r.current.Store(asOf.UnixNano())
		}
	}
}

// waitForTopics waits until every changelog topic exists (ingest creates
// them) and returns their details. While it waits, the replica is not ready
// unless it has caught up before.
func (r *Replica) waitForTopics(ctx context.Context, adm *kadm.Client) (kadm.TopicDetails, error) {
	topics := slices.Sorted(maps.Keys(r.topics))
	for logged := false; ; {
		details, err := adm.ListTopics(ctx, topics...)
		if err == nil {
			var missing []string
			for _, t := range topics {
				if d, ok := details[t]; !ok || d.Err != nil || len(d.Partitions) == 0 {
					missing = append(missing, t)
				}
			}
			if len(missing) == 0 {
				return details, nil
			}
			err = fmt.Errorf("changelog topics not created yet (is ingest running?): %s", strings.Join(missing, ", "))
		}
		if !r.caughtUp {
			r.setState(fmt.Errorf("pebble replica: %w", err))
		}
		if !logged {
			r.cfg.Logger.Info("replica waiting", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// endOffsets lists the changelogs' end offsets, trying again while the
// brokers cannot answer (a leader election, a broker restarting) rather than
// ending Run, which would stop a replica that serves. While it tries, the
// replica is not ready unless it has caught up before. The error is ctx's.
func (r *Replica) endOffsets(ctx context.Context, adm *kadm.Client, topics []string) (kadm.ListedOffsets, error) {
	for logged := false; ; {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			return ends, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !r.caughtUp {
			r.setState(fmt.Errorf("pebble replica: changelog end offsets: %w", err))
		}
		if !logged {
			r.cfg.Logger.Warn("changelog end offsets: trying again", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tombstonesGone reports whether compaction may have removed tombstones
// that the replica has not applied: a partition has records past the
// replica's offset older than the changelog's delete.retention.ms, after
// which the broker drops tombstones. A partition the replica has applied
// nothing of is read from its start, where compaction leaves nothing a
// removed tombstone deleted. When it cannot tell, it logs why and says no.
func (r *Replica) tombstonesGone(ctx context.Context, adm *kadm.Client, topic string, next, end map[int32]int64) bool {
	behind := false
	for p, o := range next {
		behind = behind || o > 0 && o < end[p]
	}
	if !behind {
		return false
	}
	retention, err := deleteRetention(ctx, adm, topic)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("changelog tombstone retention unknown: not checked", "topic", topic, "err", err)
		}
		return false
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-retention).UnixMilli(), topic)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("changelog tombstone retention not checked", "topic", topic, "err", err)
		}
		return false
	}
	for p, o := range next {
		// after is the first offset at or past the cutoff (the end when
		// none is): records before it, from o on, are older.
		if l, ok := after.Lookup(topic, p); ok && l.Err == nil && o > 0 && o < end[p] && l.Offset > o {
			return true
		}
	}
	return false
}

// deleteRetention returns a topic's delete.retention.ms.
func deleteRetention(ctx context.Context, adm *kadm.Client, topic string) (time.Duration, error) {
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := configs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, err
	}
	for _, c := range rc.Configs {
		if c.Key == "delete.retention.ms" && c.Value != nil {
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("delete.retention.ms %q: %w", *c.Value, err)
			}
			return time.Duration(ms) * time.Millisecond, nil
		}
	}
	return 0, errors.New("no delete.retention.ms")
}

// reset drops a changelog's records and offsets from the replica, and
// stores id as the ID of the topic that the offsets to come belong to.
func (r *Replica) reset(topic string, id kadm.TopicID) error {
	b := r.db.NewBatch()
	defer b.Close()
	table := recordKey(nil, r.topics[topic].String(), "")
	if err := b.DeleteRange(table, append(table[:len(table)-1:len(table)-1], 1), nil); err != nil {
		return err
	}
	offsets := append(append([]byte("o\x00"), topic...), 0)
	if err := b.DeleteRange(offsets, append(offsets[:len(offsets)-1:len(offsets)-1], 1), nil); err != nil {
		return err
	}
	if id == (kadm.TopicID{}) {
		_ = b.Delete(idKey(topic), nil) // a batch fails only when closed
	} else {
		_ = b.Set(idKey(topic), id[:], nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("reset replica of %s: %w", topic, err)
	}
	if w := r.watch.Load(); w != nil {
		w.dropped(r.topics[topic])
	}
	return nil
}

// topicID returns the ID of the topic that the replica's offsets of a
// changelog belong to: all zero when unknown.
func (r *Replica) topicID(topic string) (kadm.TopicID, error) {
	var id kadm.TopicID
	v, closer, err := r.db.Get(idKey(topic))
	if errors.Is(err, pebble.ErrNotFound) {
		return id, nil
	}
	if err != nil {
		return id, fmt.Errorf("read replica topic id: %w", err)
	}
	defer closer.Close()
	if len(v) != len(id) {
		return id, fmt.Errorf("read replica topic id: %d bytes", len(v))
	}
	copy(id[:], v)
	return id, nil
}

func (r *Replica) appliedOffset(topic string, partition int32) (int64, error) {
	v, closer, err := r.db.Get(offsetKey(topic, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read replica offset: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read replica offset: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Logger adapts slog to Pebble's logger: its chatter at debug level.
func Logger(log *slog.Logger) pebble.Logger { return pebbleLogger{log} }

type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...)) // Pebble cannot continue
}
