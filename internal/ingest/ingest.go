package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/kafkaclient"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// Config configures an Ingester.
type Config struct {
	Definitions    *features.Definitions // required
	Brokers        []string              // required
	KafkaOpts      []kgo.Opt             // TLS and SASL, for every Kafka client
	GroupID        string                // consumer group; default "quiver-ingest"
	InstanceID     string                // static group membership; empty for none
	SessionTimeout time.Duration         // how long a silent member keeps its partitions; default 10s
	// ShutdownTimeout bounds how long Run, once its context ends, keeps
	// trying to make the batch in hand durable (an unreachable broker);
	// after it the batch is abandoned uncommitted, and replayed by the next
	// run. Default 30s.
	ShutdownTimeout time.Duration
	TopicPrefix     string                // prefix of internal topics; default "quiver"
	DataDir         string                // the state store lives in DataDir/ingest; required
	Offline         *offline.Dir          // the offline store; nil writes no offline logs
	Redis           redis.UniversalClient // a shared online store (Redis or Redis Cluster); nil for none
	// WriteRetry is how long a batch's failed write to the offline store or
	// to Redis is tried again, so that a restart or failover of either (or
	// an S3 outage) does not stop ingest; after it Run stops with the
	// error, for a restart to replay the batch. Default 30s.
	WriteRetry time.Duration
	MaxBatch   int // records processed per batch; default 50,000
	// FlushInterval is how long a fetch waits for a megabyte of records
	// before it returns what there is, so about the least time between two
	// batches while ingest keeps up. Each batch writes a file per stream
	// to each offline log and commits: a poll's handful of records would
	// be files of their own, hundreds a second. An event waits up to
	// twice the interval (stage one, then stage two) before it is
	// visible. Default 100ms.
	FlushInterval time.Duration
	CacheBytes    int64                 // Pebble block cache; default 128 MiB
	Logger        *slog.Logger          // nil discards
	Registerer    prometheus.Registerer // for metrics; nil registers none
	// MaxFutureSkew, when positive, dead-letters an event whose time is
	// more than this ahead of its Kafka record's timestamp, or of the
	// clock when the timestamp is ahead of it too (ReasonFuture). Without
	// it, one event from a producer with a wrong clock moves its
	// partition's watermark into the future, and every event after it is
	// late until real time catches up. The record's timestamp is the
	// reference wherever it is not in the future, so that a replay decides
	// as the first run did; a producer's wrong clock stamps its records
	// (CreateTime) as wrongly as its events, hence the clock beside it.
	MaxFutureSkew time.Duration
	// ExpireInterval is how often ingest looks through the states of its
	// partitions for those whose latest event is older than their view's
	// TTL, and deletes them (expire). Default 10m.
	ExpireInterval time.Duration
}

func (c *Config) ensureDefaults() {
	if c.GroupID == "" {
		c.GroupID = "quiver-ingest"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "quiver"
	}
	if c.MaxBatch == 0 {
		// Each batch pays fsyncs, Parquet footers and a commit: 50,000 records
		// amortize them (10,000 ran ~20% slower) without costing freshness,
		// since a poll returns what is there.
		c.MaxBatch = 50_000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 100 * time.Millisecond
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 128 << 20
	}
	if c.ExpireInterval == 0 {
		c.ExpireInterval = 10 * time.Minute
	}
	if c.WriteRetry == 0 {
		c.WriteRetry = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// kafka returns the options of a Kafka client: the brokers, KafkaOpts,
// then extra.
func (c *Config) kafka(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.KafkaOpts, extra)
}

// Validate reports every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Definitions == nil {
		errs = append(errs, errors.New("ingest: no definitions"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("ingest: no brokers"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("ingest: no data directory"))
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("ingest: max batch %d is negative", c.MaxBatch))
	}
	if c.MaxFutureSkew < 0 {
		errs = append(errs, fmt.Errorf("ingest: max future skew %s is negative", c.MaxFutureSkew))
	}
	if c.FlushInterval < 0 || c.FlushInterval > 0 && c.FlushInterval < 10*time.Millisecond || c.FlushInterval > time.Minute {
		// Kafka clients wait at least 10 ms for a fetch.
		errs = append(errs, fmt.Errorf("ingest: flush interval %s: want 10ms to 1m", c.FlushInterval))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("ingest: shutdown timeout %s is negative", c.ShutdownTimeout))
	}
	if c.SessionTimeout < 0 {
		errs = append(errs, fmt.Errorf("ingest: session timeout %s is negative", c.SessionTimeout))
	}
	if c.ExpireInterval < 0 {
		errs = append(errs, fmt.Errorf("ingest: expire interval %s is negative", c.ExpireInterval))
	}
	if c.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("ingest: cache size %d is negative", c.CacheBytes))
	}
	return errors.Join(errs...)
}

// Ingester consumes the definitions' sources and maintains their views'
// state. See the package documentation for how it delivers effectively once.
type Ingester struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	client  *kgo.Client
	admin   *kadm.Client
	store   *store
	sources map[string]*sourceRoute // by source topic
	entries map[string]*entityRoute // by repartition topic
	dlq     string
	parts   int32               // partitions of every internal topic
	ids     map[string][16]byte // topic IDs, which recent commit requests need

	mu         sync.Mutex                   // guards what assignments change
	fatal      error                        // set by fail: an assignment not prepared, a flush failed under a rebalance; Run returns it
	wake       context.CancelFunc           // ends Run's poll, for it to see fatal
	flushing   *inflight                    // the batch being made durable, if any
	stopped    bool                         // Run returned, or is returning: nothing more is flushed
	watermarks map[string]map[int32]int64   // source topic → partition → watermark
	hwm        map[string]int64             // offline stream → high-water mark
	cache      map[shard]map[string]*cached // changelog partition → entity key → state
	assigned   map[string]map[int32]bool    // what this instance owns
	consuming  atomic.Bool                  // joined the group, assigned partitions prepared
	redisWarn  rate.Sometimes               // a failed Redis check's warning, at most every 10 s
	positions  *positions                   // committed and end offsets, for the lag
	lagWarn    rate.Sometimes               // a failed listing's warning, at most every 10 s
	expireWarn rate.Sometimes               // a failed expiry's warning, at most every 10 s
	// Repartitioned records skipped: of a source no view here reads, or
	// without the origin headers stage one writes, or that do not decode.
	foreign, noOrigin, undecodable refusal
}

// Consuming reports whether the ingester has joined its group and prepared
// what it was assigned (watermarks, offline high-water marks, state caught
// up with the changelogs): from then on it processes what it fetches. It
// stays true through later rebalances, which are brief.
func (in *Ingester) Consuming() bool { return in.consuming.Load() }

// sourceRoute is how events of one source topic are checked and re-keyed.
type sourceRoute struct {
	src      *features.Source
	entities []*entityRoute
}

// entityRoute is one entity whose views read a source: its repartition
// topic, and the views that aggregate it per source.
type entityRoute struct {
	topic     string
	keyFields map[string][]int        // source name → schema indexes of the join keys
	views     map[string][]*viewRoute // source name → views
}

type viewRoute struct {
	engine      *features.Engine
	source      *features.Source
	applied     prometheus.Counter // quiver_ingest_events_applied_total of this view
	noKey       refusal            // events whose entity's join key is null (stage one)
	failed      refusal            // events the engine could not apply (stage two)
	stateWrites prometheus.Counter
	expired     prometheus.Counter
	changelog   string
	redisKey    string // prefix of its Redis keys: <prefix>:<view>:v<version>:
	log         *offline.FeatureLog
}

// A refusal counts the records not applied for one reason, and warns of
// them with msg: at most every 10 s, since a null that fails a filter, a
// join key a producer leaves out or another deployment's records may be
// in every one.
type refusal struct {
	msg      string
	count    prometheus.Counter
	warn     rate.Sometimes
	unlogged atomic.Int64 // refused since the last warning
}

func newRefusal(msg string, count prometheus.Counter) refusal {
	return refusal{msg: msg, count: count, warn: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
}

// add counts a record, and warns with args (what the record was) and the
// records refused since the last warning.
func (r *refusal) add(log *slog.Logger, args ...any) {
	r.count.Inc()
	r.unlogged.Add(1)
	r.warn.Do(func() {
		log.Warn(r.msg, append(args, "refused_since_last_warning", r.unlogged.Swap(0))...)
	})
}

type cached struct {
	rec   stateRecord
	state *features.State
	dirty bool
}

// New connects to Kafka, creates missing internal topics and opens the state
// store. Run starts consuming.
func New(ctx context.Context, cfg Config) (*Ingester, error) {
	cfg.ensureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Ingester{
		cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer),
		sources: map[string]*sourceRoute{}, entries: map[string]*entityRoute{},
		dlq:        cfg.TopicPrefix + ".dlq",
		watermarks: map[string]map[int32]int64{}, hwm: map[string]int64{},
		cache: map[shard]map[string]*cached{}, assigned: map[string]map[int32]bool{},
		redisWarn:  rate.Sometimes{First: 1, Interval: 10 * time.Second},
		lagWarn:    rate.Sometimes{First: 1, Interval: 10 * time.Second},
		expireWarn: rate.Sometimes{First: 1, Interval: 10 * time.Second},
	}
	skipped := in.metrics.skipped
	in.foreign = newRefusal("skipping repartitioned records of a source these definitions do not read: does another deployment share --topic-prefix?", skipped.WithLabelValues(skipForeign))
	in.noOrigin = newRefusal("skipping a repartitioned record without valid origin headers", skipped.WithLabelValues(skipNoOrigin))
	in.undecodable = newRefusal("skipping a repartitioned record that does not decode", skipped.WithLabelValues(skipUndecodable))
	in.positions = &positions{parts: map[string]map[int32]*position{}, m: in.metrics}
	if err := in.route(); err != nil {
		return nil, err
	}
	var err error
	if in.store, err = openStore(filepath.Join(cfg.DataDir, "ingest"), cfg.CacheBytes, in.log); err != nil {
		return nil, err
	}
	// Internal topics are created before the consumer joins the group, so
	// that its first assignment covers them: no second rebalance when they
	// appear. The admin client caches the metadata it shards requests by
	// for a short while only: the topics it creates are soon listed.
	adminClient, err := kgo.NewClient(cfg.kafka(kgo.MetadataMinAge(250 * time.Millisecond))...)
	if err != nil {
		in.store.Close()
		return nil, fmt.Errorf("connect to kafka: %w", err)
	}
	in.admin = kadm.NewClient(adminClient)
	topics := in.consumedTopics()
	details, err := in.start(ctx, topics)
	if err != nil {
		in.admin.Close()
		in.store.Close()
		return nil, err
	}
	in.ids = map[string][16]byte{}
	for t, d := range details {
		in.ids[t] = d.ID
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.GroupID),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// Events of a transaction its producer aborted are not events.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A transaction's commit or abort marker is the last offset of
		// its partition until the next record: ingest commits past the
		// markers it fetches, or its lag would never reach zero.
		kgo.KeepControlRecords(),
		// A fetch waits for a megabyte, or the flush interval: the
		// broker gathers what trickles in, and a busy one answers at once.
		kgo.FetchMinBytes(1 << 20),
		kgo.FetchMaxWait(cfg.FlushInterval),
		kgo.ProducerLinger(2 * time.Millisecond),
		// State records may be large; the internal topics take them.
		kgo.ProducerBatchMaxBytes(online.MaxRecordBytes),
		kgo.OnPartitionsAssigned(in.onAssigned),
		kgo.OnPartitionsRevoked(in.onRevoked),
		kgo.OnPartitionsLost(in.onRevoked),
	}
	if cfg.InstanceID != "" {
		// A restarted instance with the same ID takes its partitions back at
		// once, without waiting for its old session to time out.
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if in.client, err = kgo.NewClient(cfg.kafka(opts...)...); err != nil {
		in.admin.Close()
		in.store.Close()
		return nil, fmt.Errorf("connect to kafka: %w", err)
	}
	return in, nil
}

// prepareTopics creates the missing internal topics and describes every
// topic ingest consumes, waiting for new topics to appear in metadata.
func (in *Ingester) prepareTopics(ctx context.Context, topics []string) (kadm.TopicDetails, error) {
	if err := in.createTopics(ctx); err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		details, err := in.admin.ListTopics(ctx, topics...)
		if err == nil {
			err = details.Error()
		}
		if err == nil {
			for _, d := range details {
				in.metrics.partitions.WithLabelValues(d.Topic).Set(float64(len(d.Partitions)))
			}
			return details, nil
		}
		if try == 1000 || ctx.Err() != nil {
			return nil, fmt.Errorf("describe topics: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// route builds the routing tables from the definitions.
func (in *Ingester) route() error {
	defs := in.cfg.Definitions
	for _, v := range defs.Views {
		src, ent := defs.Source(v.Source), defs.Entity(v.Entity)
		eng, err := features.NewEngine(defs, v)
		if err != nil {
			return err
		}
		sr := in.sources[src.Topic]
		if sr == nil {
			sr = &sourceRoute{src: src}
			in.sources[src.Topic] = sr
		}
		topic := in.cfg.TopicPrefix + ".repartition." + ent.Name
		er := in.entries[topic]
		if er == nil {
			er = &entityRoute{topic: topic, keyFields: map[string][]int{}, views: map[string][]*viewRoute{}}
			in.entries[topic] = er
		}
		if _, ok := er.keyFields[src.Name]; !ok {
			keys := make([]int, len(ent.JoinKeys))
			for i, k := range ent.JoinKeys {
				keys[i] = src.Field(k)
			}
			er.keyFields[src.Name] = keys
			sr.entities = append(sr.entities, er)
		}
		vr := &viewRoute{
			engine:      eng,
			source:      src,
			applied:     in.metrics.applied.WithLabelValues(v.Ref()),
			noKey:       newRefusal("event not applied", in.metrics.refused.WithLabelValues(v.Ref(), ReasonMissingKey)),
			failed:      newRefusal("event not applied", in.metrics.refused.WithLabelValues(v.Ref(), refusedApply)),
			stateWrites: in.metrics.stateWrites.WithLabelValues(v.Ref()),
			expired:     in.metrics.expired.WithLabelValues(v.Ref()),
			changelog:   online.ChangelogTopic(in.cfg.TopicPrefix, online.TableOf(v)),
			redisKey:    online.RedisKeyPrefix(in.cfg.TopicPrefix, online.TableOf(v)),
			log:         offline.NewFeatureLog(defs, eng),
		}
		er.views[src.Name] = append(er.views[src.Name], vr)
	}
	return nil
}

func (in *Ingester) consumedTopics() []string {
	var topics []string
	for t := range in.sources {
		topics = append(topics, t)
	}
	for t := range in.entries {
		topics = append(topics, t)
	}
	return topics
}

// sourceTopicPoll is how often ingest looks for source topics that do not
// exist yet.
const sourceTopicPoll = time.Second

// createTopics creates the internal topics that are missing: repartition and
// changelog topics with as many partitions as the largest source a view
// reads (replay.Partitions, by which backfill replay sizes the changelogs it
// creates too), changelogs compacted, and the DLQ. It waits for the source
// topics to exist.
func (in *Ingester) createTopics(ctx context.Context) error {
	for try := 0; ; try++ {
		parts, missing, err := replay.Partitions(ctx, in.admin, in.cfg.Definitions)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			in.parts = parts
			break
		}
		if try == 0 {
			in.log.Warn("waiting for the source topics to be created", "topics", missing)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("source topics %v: not found: %w", missing, ctx.Err())
		case <-time.After(sourceTopicPoll):
		}
	}
	want := map[string]map[string]*string{in.dlq: replay.TopicConfigs(false)}
	for t, er := range in.entries {
		want[t] = replay.TopicConfigs(false)
		for _, views := range er.views {
			for _, v := range views {
				want[v.changelog] = replay.TopicConfigs(true)
			}
		}
	}
	if err := in.markNewViews(ctx, want); err != nil {
		return err
	}
	if err := in.markRemovedViews(ctx); err != nil {
		return err
	}
	var keyed []string
	for t, cfg := range want {
		parts := in.parts
		if t == in.dlq {
			parts = 1
		} else {
			keyed = append(keyed, t)
		}
		resp, err := in.admin.CreateTopic(ctx, parts, -1, cfg, t)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, resp.Err)
		}

	}
	if err := replay.AllowLargeRecords(ctx, in.admin, slices.Collect(maps.Keys(want))...); err != nil {
		return err
	}
	// An entity's state lives in the same partition of its repartition and
	// changelog topics only if they have the same number of partitions.
	details, err := in.admin.ListTopics(ctx, keyed...)
	if err != nil {
		return fmt.Errorf("list internal topics: %w", err)
	}
	for _, t := range keyed {
		if d, ok := details[t]; ok && d.Err == nil && len(d.Partitions) > 0 && int32(len(d.Partitions)) != in.parts {
			return fmt.Errorf("topic %s has %d partitions, want %d like the largest source: delete it or change the sources", t, len(d.Partitions), in.parts)
		}
	}
	return nil
}

// Run consumes until ctx ends, then makes the batch in hand durable,
// commits it and returns.
//
// Making a batch durable (fsyncs, acknowledgements, commit) overlaps with
// processing the next one. The flush works from a snapshot of the batch,
// flushes complete in order, and a rebalance waits for the one in flight
// (onRevoked), so a partition's next owner finds all of it in the changelog.
func (in *Ingester) Run(ctx context.Context) error {
	// A batch in hand is finished, not abandoned, unless that takes longer
	// than the shutdown timeout.
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(in.cfg.ShutdownTimeout, func() {
			in.log.Error("shutdown timed out: the batch in hand is abandoned uncommitted, the next run replays it", "timeout", in.cfg.ShutdownTimeout)
			abandon()
		})
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stop()
	poll, wake := context.WithCancel(ctx)
	defer wake()
	in.mu.Lock()
	in.wake = wake
	if in.fatal != nil { // before Run
		wake()
	}
	in.mu.Unlock()
	// Until Run returns, or a fatal error wakes poll.
	var watching sync.WaitGroup
	watching.Go(func() {
		in.every(poll, lagInterval, in.checkLag, &in.lagWarn, "listing end offsets for the lag failed; trying again")
	})
	watching.Go(func() {
		in.every(poll, in.cfg.ExpireInterval, func(ctx context.Context) error { return in.expire(ctx, work) },
			&in.expireWarn, "deleting expired states failed; trying again")
	})
	if in.cfg.Redis != nil {
		watching.Go(func() {
			in.every(poll, redisCheckInterval, in.checkRedis, &in.redisWarn, "checking that Redis holds the states failed; trying again")
		})
	}
	defer func() { wake(); watching.Wait() }()
	for {
		fetches := in.client.PollRecords(poll, in.cfg.MaxBatch)
		if err := fetches.Err0(); (ctx.Err() != nil && fetches.Empty()) || errors.Is(err, kgo.ErrClientClosed) {
			return in.drain()
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				in.log.Warn("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		// One hold of in.mu from processing the batch to starting its
		// flush: states expire (expire) between batches, never between a
		// batch's snapshot and its flush.
		in.mu.Lock()
		f, err := in.process(work, fetches)
		if err == nil {
			err = in.waitFlush()
		}
		if err == nil {
			// A flush that failed under a rebalance (settle), or partitions
			// not prepared: nothing after it may be committed.
			err = in.fatal
		}
		if err == nil {
			in.startFlush(work, f)
			if in.cacheSize() > maxCached { // trim only what is durable
				err = in.waitFlush()
				clear(in.cache)
			}
		}
		in.mu.Unlock()
		in.client.AllowRebalance()
		if err != nil {
			in.drain()
			return err
		}
	}
}

// fail records an error that stops Run, under in.mu, and wakes Run from its
// poll to return it: the partitions the error concerns may be paused, and
// the others idle.
func (in *Ingester) fail(err error) {
	in.fatal = cmp.Or(in.fatal, err)
	if in.wake != nil {
		in.wake()
	}
}

// inflight is a batch being made durable.
type inflight struct {
	done chan struct{}
	err  error
}

// startFlush makes f durable in the background; callers hold in.mu. A
// flush that fails wakes Run from its poll, to return the error: on a
// quiet stream no record would.
func (in *Ingester) startFlush(ctx context.Context, f *flush) {
	p := &inflight{done: make(chan struct{})}
	in.flushing = p
	wake := in.wake
	go func() {
		p.err = in.durable(ctx, f)
		close(p.done)
		if p.err != nil && wake != nil {
			wake()
		}
	}()
}

// waitFlush waits for the batch being made durable, if any; callers hold in.mu.
func (in *Ingester) waitFlush() error {
	p := in.flushing
	if p == nil {
		return nil
	}
	<-p.done
	in.flushing = nil
	return p.err
}

// drain waits for the batch in flight as Run returns; no flush starts after.
func (in *Ingester) drain() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stopped = true
	return cmp.Or(in.waitFlush(), in.fatal)
}

// Close leaves the group and closes the client and the state store,
// waiting at most kafkaclient.Timeout for the client.
func (in *Ingester) Close() error {
	if err := kafkaclient.Close(in.client); err != nil {
		in.log.Warn("stopping", "err", err)
	}
	in.admin.Close()
	return in.store.Close()
}

// batch is what one poll's records produce before it is made durable.
type batch struct {
	commits    map[string]map[int32]kmsg.OffsetCommitRequestTopicPartition
	watermarks map[string]map[int32]int64 // source topic → partition → watermark after the batch
	events     map[string]*offline.Batch  // offline event log, by stream
	rows       map[string]*offline.Batch  // offline feature log, by stream and view

	cl       *kgo.Client
	produced *produceErr // shared by a poll's partition batches and their merge
}

// produceErr is the first failed produce of a poll's re-keyed or
// dead-lettered records. Their callbacks run until durable's Flush, after
// the partitions' batches are merged, so the batches share one.
type produceErr struct {
	mu  sync.Mutex
	err error
}

// send produces a re-keyed or dead-lettered record right away: nothing has to
// be durable before it, and durable waits for it before committing offsets.
func (b *batch) send(ctx context.Context, r *kgo.Record) {
	b.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
		if err != nil {
			b.produced.mu.Lock()
			b.produced.err = cmp.Or(b.produced.err, err)
			b.produced.mu.Unlock()
		}
	})
}

// process applies a poll's records and returns the batch, prepared for
// making durable; callers hold in.mu.
func (in *Ingester) process(ctx context.Context, fetches kgo.Fetches) (*flush, error) {
	var work []kgo.FetchTopicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 && in.assigned[p.Topic][p.Partition] {
			work = append(work, p)
			if er := in.entries[p.Topic]; er != nil {
				in.shardCache(er, p.Partition)
			}
		}
	})

	// Partitions are independent: a source partition has its own
	// watermark, and the entities of a repartition partition live in the
	// same partition of each changelog, with a cache shard of their own. So
	// each partition is processed on its own goroutine, into its own batch.
	parts := make([]*batch, len(work))
	errs := make([]error, len(work))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	produced := &produceErr{}
	for i, p := range work {
		parts[i] = newBatch(in.client, produced)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			in.positions.observe(p.Topic, p.Partition, p.LogStartOffset, p.LastStableOffset)
			last := p.Records[len(p.Records)-1].Offset // the commit covers the markers too
			p.Records = slices.DeleteFunc(p.Records, func(r *kgo.Record) bool { return r.Attrs.IsControl() })
			if sr := in.sources[p.Topic]; sr != nil {
				in.metrics.consumed.WithLabelValues("source").Add(float64(len(p.Records)))
				in.checkAndRekey(ctx, parts[i], sr, p, last)
			} else {
				in.metrics.consumed.WithLabelValues("repartition").Add(float64(len(p.Records)))
				errs[i] = in.aggregate(parts[i], in.entries[p.Topic], p, last)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b := newBatch(in.client, produced)
	for _, part := range parts {
		b.merge(part)
	}
	for topic, parts := range b.watermarks {
		if in.watermarks[topic] == nil {
			in.watermarks[topic] = map[int32]int64{}
		}
		maps.Copy(in.watermarks[topic], parts)
	}
	return in.snapshot(b), nil
}

func newBatch(cl *kgo.Client, produced *produceErr) *batch {
	return &batch{
		commits:    map[string]map[int32]kmsg.OffsetCommitRequestTopicPartition{},
		watermarks: map[string]map[int32]int64{},
		events:     map[string]*offline.Batch{},
		rows:       map[string]*offline.Batch{},
		cl:         cl,
		produced:   produced,
	}
}

// merge adds what another partition's batch produced; streams, partitions
// and topics of different partitions never collide.
func (b *batch) merge(o *batch) {
	for topic, parts := range o.commits {
		if b.commits[topic] == nil {
			b.commits[topic] = map[int32]kmsg.OffsetCommitRequestTopicPartition{}
		}
		maps.Copy(b.commits[topic], parts)
	}
	for topic, parts := range o.watermarks {
		if b.watermarks[topic] == nil {
			b.watermarks[topic] = map[int32]int64{}
		}
		maps.Copy(b.watermarks[topic], parts)
	}
	maps.Copy(b.events, o.events)
	maps.Copy(b.rows, o.rows)
}

func (b *batch) err() error {
	b.produced.mu.Lock()
	defer b.produced.mu.Unlock()
	return b.produced.err
}

// commitAt records that a partition is done up to and including offset.
func (b *batch) commitAt(topic string, partition int32, offset int64, metadata string) {
	if b.commits[topic] == nil {
		b.commits[topic] = map[int32]kmsg.OffsetCommitRequestTopicPartition{}
	}
	c := kmsg.NewOffsetCommitRequestTopicPartition()
	c.Partition, c.Offset, c.LeaderEpoch = partition, offset+1, -1
	if metadata != "" {
		c.Metadata = &metadata
	}
	b.commits[topic][partition] = c
}

// Headers of repartitioned and dead-lettered records.
const (
	hSource    = "quiver-source"
	hTopic     = "quiver-topic"
	hPartition = "quiver-partition"
	hOffset    = "quiver-offset"
	hReason    = "quiver-reason"
	hError     = "quiver-error"
)

// checkAndRekey is stage one: decode each source event, send what is bad or
// late to the DLQ, and re-key the rest to each entity's repartition topic.
// The partition is done up to offset last.
//
// Per-record bytes (headers, keys, encoded events) are appended to one
// arena and records taken from a slab: kgo keeps them until the batch's
// flush, and the arena and slab outlive it.
func (in *Ingester) checkAndRekey(ctx context.Context, b *batch, sr *sourceRoute, p kgo.FetchTopicPartition, last int64) {
	wm := in.watermarks[p.Topic][p.Partition]
	lateness := sr.src.AllowedLateness.Milliseconds()
	skew := in.cfg.MaxFutureSkew.Milliseconds()
	now := time.Now()
	stream := fmt.Sprintf("%s/%d", p.Topic, p.Partition)
	hwm, logged := in.hwm["events/"+sr.src.Name+"@"+stream]
	source, topic := []byte(sr.src.Name), []byte(p.Topic)
	partition := strconv.AppendInt(nil, int64(p.Partition), 10)
	arena := make([]byte, 0, 64*len(p.Records))
	slab := make([]kgo.Record, len(p.Records)*len(sr.entities))
	headers := make([]kgo.RecordHeader, 0, 4*len(p.Records))
	// bytes appends to the arena; the returned slice stays valid because a
	// full arena is replaced, never grown in place.
	bytes := func(f func([]byte) []byte) []byte {
		if cap(arena)-len(arena) < 512 {
			arena = make([]byte, 0, max(4096, 2*cap(arena)))
		}
		start := len(arena)
		arena = f(arena)
		return arena[start:len(arena):len(arena)]
	}
	var ev features.Event
	var keyVals []features.Value
	var keys [][]byte // of each entity; nil where a join key is null
	for _, r := range p.Records {
		start := len(headers)
		headers = append(headers,
			kgo.RecordHeader{Key: hSource, Value: source},
			kgo.RecordHeader{Key: hTopic, Value: topic},
			kgo.RecordHeader{Key: hPartition, Value: partition},
			kgo.RecordHeader{Key: hOffset, Value: bytes(func(a []byte) []byte { return strconv.AppendInt(a, r.Offset, 10) })})
		recHeaders := headers[start:len(headers):len(headers)]
		origin := recHeaders[1:]
		if err := sr.src.DecodeJSON(r.Value, &ev); err != nil {
			var de *features.DecodeError
			errors.As(err, &de)
			b.send(ctx, in.deadLetter(r, origin, de.Reason, err))
			continue
		}
		if ev.Time < satSub(wm, lateness) {
			b.send(ctx, in.deadLetter(r, origin, features.ReasonLate,
				fmt.Errorf("event time %s is older than the watermark %s minus the allowed lateness %s",
					time.UnixMilli(ev.Time).UTC().Format(time.RFC3339Nano), time.UnixMilli(wm).UTC().Format(time.RFC3339Nano), sr.src.AllowedLateness)))
			continue
		}
		if skew > 0 && ev.Time > min(r.Timestamp.UnixMilli(), now.UnixMilli())+skew {
			ref := "the record's timestamp " + r.Timestamp.UTC().Format(time.RFC3339Nano)
			if now.Before(r.Timestamp) {
				ref = "ingest's clock " + now.UTC().Format(time.RFC3339Nano) + " (the record's timestamp, " + r.Timestamp.UTC().Format(time.RFC3339Nano) + ", is ahead of it too)"
			}
			b.send(ctx, in.deadLetter(r, origin, ReasonFuture,
				fmt.Errorf("event time %s is more than %s ahead of %s",
					time.UnixMilli(ev.Time).UTC().Format(time.RFC3339Nano), in.cfg.MaxFutureSkew, ref)))
			continue
		}
		keys = keys[:0]
		for _, er := range sr.entities {
			var ok bool
			key := bytes(func(a []byte) []byte {
				keyVals = keyVals[:0]
				for _, f := range er.keyFields[sr.src.Name] {
					keyVals = append(keyVals, ev.Fields[f])
				}
				var k []byte
				if k, ok = online.AppendEntityKey(a, keyVals...); !ok {
					return a
				}
				return k
			})
			if !ok {
				key = nil
			}
			keys = append(keys, key)
		}
		if !slices.ContainsFunc(keys, func(k []byte) bool { return k != nil }) {
			b.send(ctx, in.deadLetter(r, origin, ReasonMissingKey, sr.nullKeysError()))
			continue
		}
		encoded := bytes(func(a []byte) []byte { return sr.src.AppendEvent(a, &ev) }) // stage two decodes this, not the JSON again
		if n := len(encoded) + len(slices.MaxFunc(keys, func(a, b []byte) int { return cmp.Compare(len(a), len(b)) })); n > maxForward {
			b.send(ctx, in.deadLetter(r, origin, ReasonTooLarge,
				fmt.Errorf("the event takes %d bytes re-keyed, more than the %d ingest forwards", n, maxForward)))
			continue
		}
		wm = max(wm, ev.Time)
		for i, er := range sr.entities {
			if keys[i] == nil {
				// Another entity's views take the event; this one's cannot.
				for _, v := range er.views[sr.src.Name] {
					v.noKey.add(in.log, "view", v.engine.View().Ref(), "reason", ReasonMissingKey, "topic", r.Topic,
						"partition", r.Partition, "offset", r.Offset, "err", sr.nullKeyError(er))
				}
				continue
			}
			rec := &slab[0]
			slab = slab[1:]
			// The record's time is when it was produced, not the event's:
			// the topic's retention counts from it, and a broker may refuse
			// times far from its clock.
			*rec = kgo.Record{Topic: er.topic, Key: keys[i], Value: encoded, Headers: recHeaders}
			b.send(ctx, rec)
		}
		if in.cfg.Offline != nil && (!logged || r.Offset > hwm) {
			b.eventRow(sr, stream, r, &ev)
		}
	}
	b.watermarks[p.Topic] = map[int32]int64{p.Partition: wm}
	b.commitAt(p.Topic, p.Partition, last, "wm="+strconv.FormatInt(wm, 10))
}

// ReasonMissingKey is the DLQ reason of an event that no view can take: a
// join key of every entity whose views read its source is null. An event
// with some entity's key is taken by that entity's views, and counted as
// refused by the others'.
const ReasonMissingKey = "missing_entity_key"

// refusedApply is the reason quiver_ingest_events_refused_total gives for
// an event the engine could not apply: its filter failed (on a null field,
// say) or a number it sums is out of range.
const refusedApply = "apply_error"

// ReasonFuture is the DLQ reason of an event whose time is further ahead
// of its record's timestamp than Config.MaxFutureSkew allows.
const ReasonFuture = "future_event_time"

// ReasonTooLarge is the DLQ reason of an event too large to re-key: its
// encoding and key take more than maxForward bytes.
const ReasonTooLarge = "record_too_large"

// maxForward bounds the key and value of a record ingest produces, under
// the producer's batch limit (about 1 MB) and brokers' default message
// size, with room for headers. A source topic may take larger records: an
// event too large to re-key is dead-lettered, and a dead-lettered record
// too large to copy goes to the DLQ without its key and value.
const maxForward = 900_000

// nullKeysError names the join keys of which an event lacks one per entity.
// nullKeyError is why an event with a null join key of er cannot go to
// its views.
func (sr *sourceRoute) nullKeyError(er *entityRoute) error {
	var names []string
	for _, f := range er.keyFields[sr.src.Name] {
		names = append(names, sr.src.Schema[f].Name)
	}
	return fmt.Errorf("a join key of the view's entity is null (join keys %s)", strings.Join(names, ", "))
}

func (sr *sourceRoute) nullKeysError() error {
	var names []string
	for _, er := range sr.entities {
		for _, f := range er.keyFields[sr.src.Name] {
			names = append(names, sr.src.Schema[f].Name)
		}
	}
	return fmt.Errorf("no view can take the event: a join key is null for every entity whose views read source %s (join keys %s)",
		sr.src.Name, strings.Join(names, ", "))
}

func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

func (in *Ingester) deadLetter(r *kgo.Record, origin []kgo.RecordHeader, reason string, err error) *kgo.Record {
	in.metrics.dlq.WithLabelValues(reason).Inc()
	msg, key, value := err.Error(), r.Key, r.Value
	if len(msg) > 4096 { // a message may quote a field: a number of a million digits, say
		msg = strings.ToValidUTF8(msg[:4096], "") + "…"
	}
	// The producer's headers (trace context, say) go along, but for any
	// of ingest's own, from a record dead-lettered before and sent again.
	headers := append([]kgo.RecordHeader{{Key: hReason, Value: []byte(reason)}, {Key: hError, Value: []byte(msg)}}, origin...)
	n := len(key) + len(value)
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, "quiver-") {
			headers = append(headers, h)
			n += len(h.Key) + len(h.Value)
		}
	}
	if n > maxForward {
		headers[1].Value = fmt.Appendf(nil, "%s (the record's %d bytes of key, value and headers are not copied, more than the %d ingest forwards: read it at its topic, partition and offset)", msg, n, maxForward)
		key, value, headers = nil, nil, headers[:2+len(origin)]
	}
	return &kgo.Record{Topic: in.dlq, Key: key, Value: value, Headers: headers}
}

func (b *batch) eventRow(sr *sourceRoute, stream string, r *kgo.Record, ev *features.Event) {
	key := "events/" + sr.src.Name + "@" + stream
	ob := b.events[key]
	if ob == nil {
		ob = &offline.Batch{Dir: "events/" + sr.src.Name, Columns: offline.EventColumns(sr.src), TimeColumn: len(sr.src.Schema), Stream: stream, FirstOffset: r.Offset}
		b.events[key] = ob
	}
	row := append(append([]features.Value(nil), ev.Fields...),
		features.Timestamp(ev.Time), features.String(r.Topic), features.Int(int64(r.Partition)), features.Int(r.Offset))
	ob.Rows = append(ob.Rows, row)
	ob.LastOffset = r.Offset
}

func headerBytes(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// parseInt parses a non-negative decimal header value without allocating.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// aggregate is stage two: apply re-keyed events to their entities' states,
// skipping those a state has already applied. The partition is done up to
// offset last.
func (in *Ingester) aggregate(b *batch, er *entityRoute, p kgo.FetchTopicPartition, last int64) error {
	stream := fmt.Sprintf("%s/%d", p.Topic, p.Partition)
	var ev features.Event
	for _, r := range p.Records {
		source := headerBytes(r, hSource)
		views := er.views[string(source)] // a map index by string(bytes) does not allocate
		srcPart, ok1 := parseInt(headerBytes(r, hPartition))
		srcOff, ok2 := parseInt(headerBytes(r, hOffset))
		if !ok1 || !ok2 || srcPart > math.MaxInt32 || len(source) == 0 {
			in.noOrigin.add(in.log, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
			continue
		}
		if len(views) == 0 {
			in.foreign.add(in.log, "source", string(source), "source_topic", string(headerBytes(r, hTopic)), "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
			continue
		}
		if err := views[0].source.DecodeEvent(r.Value, &ev); err != nil {
			in.undecodable.add(in.log, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		ev.Partition, ev.Offset = int32(srcPart), srcOff
		for _, v := range views {
			c, err := in.state(v, p.Partition, r.Key)
			if err != nil {
				return err
			}
			if last, ok := c.rec.applied[ev.Partition]; ok && ev.Offset <= last {
				continue // applied before a crash or a rebalance
			}
			applied, err := v.engine.Apply(c.state, &ev)
			if err != nil {
				v.failed.add(in.log, "view", v.engine.View().Ref(), "reason", refusedApply, "topic", string(headerBytes(r, hTopic)),
					"partition", ev.Partition, "offset", ev.Offset, "err", err)
			}
			if !applied {
				continue // filtered out: a replay filters it out again
			}
			c.rec.applied[ev.Partition] = ev.Offset
			c.dirty = true
			v.applied.Inc()
			if in.cfg.Offline != nil {
				in.featureRow(b, v, stream, r.Offset, c, &ev)
			}
		}
	}
	b.commitAt(p.Topic, p.Partition, last, "")
	return nil
}

func (in *Ingester) featureRow(b *batch, v *viewRoute, stream string, offset int64, c *cached, ev *features.Event) {
	key := v.log.Dir + "@" + stream
	if hwm, ok := in.hwm[key]; ok && offset <= hwm {
		return
	}
	ob := b.rows[key]
	if ob == nil {
		ob = v.log.Batch(stream, offset, offset)
		b.rows[key] = ob
	}
	ob.Rows = append(ob.Rows, v.log.Row(c.state, ev))
	ob.LastOffset = offset
}

// shard is one changelog partition: the entities one repartition partition
// owns in one view.
type shard struct {
	changelog string
	partition int32
}

// shardCache makes sure a repartition partition's cache shards exist, before
// goroutines use them.
func (in *Ingester) shardCache(er *entityRoute, partition int32) {
	for _, views := range er.views {
		for _, v := range views {
			if k := (shard{v.changelog, partition}); in.cache[k] == nil {
				in.cache[k] = map[string]*cached{}
			}
		}
	}
}

// state returns an entity's state from the cache, the store, or new.
func (in *Ingester) state(v *viewRoute, partition int32, keyBytes []byte) (*cached, error) {
	m := in.cache[shard{v.changelog, partition}]
	if c := m[string(keyBytes)]; c != nil { // a map index by string(bytes) does not allocate
		return c, nil
	}
	key := string(keyBytes)
	raw, err := in.store.get(v.changelog, key)
	if err != nil {
		return nil, err
	}
	c := &cached{rec: stateRecord{applied: map[int32]int64{}}, state: v.engine.NewState()}
	if raw != nil {
		if c.rec, err = decodeRecord(raw); err != nil {
			return nil, fmt.Errorf("state of %s in %s: %w", key, v.changelog, err)
		}
		if c.state, err = v.engine.DecodeState(c.rec.state); err != nil {
			return nil, fmt.Errorf("state of %s in %s: %w", key, v.changelog, err)
		}
	}
	m[key] = c
	return c, nil
}

// flush is a batch, snapshotted: what must be made durable.
type flush struct {
	b     *batch
	dirty []dirtyState
}

type dirtyState struct {
	view *viewRoute
	key  string
	rec  *kgo.Record
}

// snapshot prepares a batch for durable, under in.mu: it encodes every state
// the batch changed, and moves the offline high-water marks.
func (in *Ingester) snapshot(b *batch) *flush {
	f := &flush{b: b}
	for sh, m := range in.cache {
		for key, c := range m {
			if !c.dirty {
				continue
			}
			v := in.viewByChangelog(sh.changelog)
			var value []byte // none, a tombstone, for a state that expired (expire)
			if _, ok := c.state.LastEventTime(); ok {
				c.rec.state = v.engine.AppendState(c.rec.state[:0], c.state)
				value = c.rec.appendTo(nil)
				v.stateWrites.Inc()
			}
			// Kafka hashes the key to partition sh.partition: repartition and
			// changelog topics have the same partition count (createTopics).
			r := &kgo.Record{Topic: sh.changelog, Key: []byte(key), Value: value}
			f.dirty = append(f.dirty, dirtyState{v, key, r})
			c.dirty = false
		}
	}
	for _, m := range []map[string]*offline.Batch{b.events, b.rows} {
		for key, ob := range m {
			in.hwm[key] = ob.LastOffset // durable before any later batch is
		}
	}
	return f
}

// durable makes a prepared batch durable, in the order that keeps replays
// exact: offline files first (a replay rewrites the same rows or skips them
// by high-water mark), then the changelog (and the re-keyed and
// dead-lettered records, sent as they were made), then Redis (a replay
// writes the same states again), then the state store (never ahead of the
// changelog), and the offsets last. It touches no state of the Ingester but
// the store, so it runs while the next batch is processed.
func (in *Ingester) durable(ctx context.Context, f *flush) error {
	defer prometheus.NewTimer(in.metrics.batch).ObserveDuration()
	b := f.b
	if in.cfg.Offline != nil {
		if err := in.writeOffline(ctx, b.events, b.rows); err != nil {
			return err
		}
	}
	changelog := make([]*kgo.Record, len(f.dirty))
	for i, d := range f.dirty {
		changelog[i] = d.rec
	}
	if err := in.client.ProduceSync(ctx, changelog...).FirstErr(); err != nil {
		return fmt.Errorf("produce changelog: %w", err)
	}
	if err := in.client.Flush(ctx); err != nil { // the re-keyed and dead-lettered records
		return fmt.Errorf("produce: %w", err)
	}
	if err := b.err(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if in.cfg.Redis != nil && len(f.dirty) > 0 {
		if err := in.writeRedis(ctx, f.dirty); err != nil {
			return err
		}
	}
	if len(f.dirty) > 0 {
		w := in.store.newWrite()
		next := map[string]map[int32]int64{}
		for _, d := range f.dirty {
			cl := d.view.changelog
			w.put(cl, d.key, d.rec.Value)
			if next[cl] == nil {
				next[cl] = map[int32]int64{}
			}
			next[cl][d.rec.Partition] = max(next[cl][d.rec.Partition], d.rec.Offset+1)
		}
		for changelog, parts := range next {
			for p, o := range parts {
				w.restoredTo(changelog, p, o)
			}
		}
		if err := w.commit(); err != nil {
			return err
		}
	}
	return in.commit(ctx, b.commits)
}

// writeRedis writes the states to Redis: the writes set whole states, so
// a batch written twice, or in part then whole, ends the same.
func (in *Ingester) writeRedis(ctx context.Context, dirty []dirtyState) error {
	return in.retry(ctx, "Redis", func() error {
		pipe := in.cfg.Redis.Pipeline()
		for _, d := range dirty {
			if d.rec.Value == nil {
				pipe.Del(ctx, d.view.redisKey+d.key)
			} else {
				pipe.Set(ctx, d.view.redisKey+d.key, d.rec.Value, d.view.engine.View().TTL)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	})
}

// writeOffline writes the batch's offline logs, one file per stream and
// date, concurrently: each waits for its own fsync. A batch's files have
// names of its offsets, so a batch written again, in part then whole,
// leaves the same files; a failed write is tried again for the batches
// that failed.
func (in *Ingester) writeOffline(ctx context.Context, logs ...map[string]*offline.Batch) error {
	var todo []*offline.Batch
	for _, m := range logs {
		for _, ob := range m {
			todo = append(todo, ob)
		}
	}
	return in.retry(ctx, "the offline store", func() error {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		var failed []*offline.Batch
		sem := make(chan struct{}, 8)
		for _, ob := range todo {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := in.cfg.Offline.WriteBatch(ctx, *ob); err != nil {
					mu.Lock()
					errs = append(errs, err)
					failed = append(failed, ob)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		todo = failed
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("write offline log: %w", err)
		}
		return nil
	})
}

// retry calls write until it succeeds, again with back-off (100 ms to 2 s)
// for up to WriteRetry, so that a restart or failover of the store does not
// stop ingest. It logs the first failure, and when the store takes the
// writes again. After WriteRetry, or once ctx ends, it returns the error,
// for Run to stop and its restart to replay the batch.
func (in *Ingester) retry(ctx context.Context, store string, write func() error) error {
	deadline := time.Now().Add(in.cfg.WriteRetry)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := write()
		if err == nil {
			if wait > 100*time.Millisecond {
				in.log.Info(store + " takes the writes again")
			}
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("write to %s (tried for %s): %w", store, in.cfg.WriteRetry, err)
		}
		if wait == 100*time.Millisecond {
			in.log.Warn("writing to "+store+" failed; trying again", "err", err, "for", in.cfg.WriteRetry)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write to %s: %w (%w)", store, ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// maxCached bounds the decoded states kept between batches.
const maxCached = 200_000

func (in *Ingester) cacheSize() int {
	n := 0
	for _, m := range in.cache {
		n += len(m)
	}
	return n
}

func (in *Ingester) viewByChangelog(changelog string) *viewRoute {
	if v := in.findView(changelog); v != nil {
		return v
	}
	panic("ingest: no view writes changelog " + changelog)
}

// findView returns the view that writes a changelog, or nil.
func (in *Ingester) findView(changelog string) *viewRoute {
	for _, er := range in.entries {
		for _, views := range er.views {
			for _, v := range views {
				if v.changelog == changelog {
					return v
				}
			}
		}
	}
	return nil
}

// commit commits offsets, with each source partition's watermark as
// metadata, as this group member. kgo's own commits carry no metadata.
func (in *Ingester) commit(ctx context.Context, commits map[string]map[int32]kmsg.OffsetCommitRequestTopicPartition) error {
	if len(commits) == 0 {
		return nil
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = in.cfg.GroupID
	req.MemberID, req.Generation = in.client.GroupMetadata()
	for topic, parts := range commits {
		t := kmsg.NewOffsetCommitRequestTopic()
		t.Topic, t.TopicID = topic, in.ids[topic]
		for _, p := range parts {
			t.Partitions = append(t.Partitions, p)
		}
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, in.client)
	if err != nil {
		return fmt.Errorf("commit offsets: %w", err)
	}
	for _, t := range resp.Topics {
		topic := t.Topic
		if topic == "" { // named by its ID (version 10 on)
			for name, id := range in.ids {
				if id == t.TopicID {
					topic = name
				}
			}
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil && !isRebalance(err) {
				return fmt.Errorf("commit %s/%d: %w", topic, p.Partition, err)
			}
			if err != nil {
				// A rebalance took the partition: its new owner replays from the
				// last commit, and applied offsets make the replay exact.
				in.log.Warn("commit refused", "topic", topic, "partition", p.Partition, "err", err)
				continue
			}
			in.positions.commit(topic, p.Partition, commits[topic][p.Partition].Offset)
		}
	}
	return nil
}

// isRebalance reports whether a commit failed because the group moved on.
func isRebalance(err error) bool {
	return errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.UnknownMemberID) ||
		errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.FencedInstanceID) || errors.Is(err, kerr.StaleMemberEpoch)
}

// settle prepares for a change of assignment, under in.mu: the batch in
// flight becomes durable (a failure stops Run), and cached states, which
// another instance may change next, are dropped.
func (in *Ingester) settle() {
	if err := in.waitFlush(); err != nil {
		in.fail(err)
	}
	clear(in.cache)
}

// onAssigned loads what each new partition needs before its first batch:
// source watermarks from the committed metadata, offline high-water marks,
// and, for repartition partitions, the state store caught up with the
// changelog.
func (in *Ingester) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.settle()
	if err := in.prepare(ctx, assigned); err != nil {
		// Without its watermarks or state a partition cannot be processed
		// exactly. Stop: Run returns the error, and the process exits for its
		// supervisor to restart it; the partitions go to other instances.
		in.fail(fmt.Errorf("prepare assigned partitions: %w", err))
		cl.PauseFetchPartitions(assigned)
		return
	}
	for t, ps := range assigned {
		if in.assigned[t] == nil {
			in.assigned[t] = map[int32]bool{}
		}
		for _, p := range ps {
			in.assigned[t][p] = true
		}
	}
	in.consuming.Store(true)
	in.log.Info("partitions assigned", "partitions", assigned)
}

// onRevoked lets partitions go once the batch in flight is durable: their
// next owner restores from a changelog that holds all of it.
func (in *Ingester) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.settle()
	for t, ps := range revoked {
		for _, p := range ps {
			delete(in.assigned[t], p)
		}
	}
	in.positions.disown(revoked)
	in.log.Info("partitions revoked", "partitions", revoked)
}

func (in *Ingester) prepare(ctx context.Context, assigned map[string][]int32) error {
	seed := map[*viewRoute][]int32{} // changelog partitions to write to Redis, if it lacks them
	committed, err := in.admin.FetchOffsets(ctx, in.cfg.GroupID)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	in.positions.own(assigned, committed)
	for topic, parts := range assigned {
		if sr := in.sources[topic]; sr != nil {
			if in.watermarks[topic] == nil {
				in.watermarks[topic] = map[int32]int64{}
			}
			for _, p := range parts {
				in.watermarks[topic][p] = math.MinInt64
				if o, ok := committed.Lookup(topic, p); ok && strings.HasPrefix(o.Metadata, "wm=") {
					wm, err := strconv.ParseInt(strings.TrimPrefix(o.Metadata, "wm="), 10, 64)
					if err != nil {
						return fmt.Errorf("watermark of %s/%d: %w", topic, p, err)
					}
					in.watermarks[topic][p] = wm
				}
				if err := in.loadHWM(ctx, "events/"+sr.src.Name, fmt.Sprintf("%s/%d", topic, p)); err != nil {
					return err
				}
			}
			continue
		}
		er := in.entries[topic]
		for _, p := range parts {
			for _, views := range er.views {
				for _, v := range views {
					if err := in.restore(ctx, v.changelog, p); err != nil {
						return err
					}
					if err := in.loadHWM(ctx, v.log.Dir, fmt.Sprintf("%s/%d", topic, p)); err != nil {
						return err
					}
					seed[v] = append(seed[v], p)
				}
			}
		}
	}
	if in.cfg.Redis == nil || len(seed) == 0 {
		return nil
	}
	return in.seedRedis(ctx, seed)
}

func (in *Ingester) loadHWM(ctx context.Context, dir, stream string) error {
	if in.cfg.Offline == nil {
		return nil
	}
	o, ok, err := in.cfg.Offline.HighWaterMark(ctx, dir, stream)
	if err != nil {
		return fmt.Errorf("offline high-water mark of %s %s: %w", dir, stream, err)
	}
	key := dir + "@" + stream
	if ok {
		in.hwm[key] = o
	} else {
		delete(in.hwm, key)
	}
	return nil
}

// restore brings the state store up to the end of a changelog partition.
func (in *Ingester) restore(ctx context.Context, changelog string, partition int32) error {
	from, err := in.store.restoreOffset(changelog, partition)
	if err != nil {
		return err
	}
	restored := 0
	end, err := in.readChangelog(ctx, changelog, partition, from, func(recs []*kgo.Record) error {
		w := in.store.newWrite()
		for _, r := range recs {
			w.put(changelog, string(r.Key), r.Value)
		}
		restored += len(recs)
		w.restoredTo(changelog, partition, recs[len(recs)-1].Offset+1)
		return w.commit()
	})
	if err != nil || end <= from {
		return err
	}
	in.log.Info("restored from changelog", "topic", changelog, "partition", partition, "from", from, "to", end, "records", restored)
	return nil
}

// readChangelog reads a changelog partition from offset from to at least
// its end as it is now, handing each fetch's records to fn, and returns that
// end.
func (in *Ingester) readChangelog(ctx context.Context, changelog string, partition int32, from int64, fn func([]*kgo.Record) error) (int64, error) {
	end, err := in.changelogEnd(ctx, changelog, partition)
	if err != nil || end <= from {
		return end, err
	}
	cl, err := kgo.NewClient(in.cfg.kafka(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{changelog: {partition: kgo.NewOffset().At(from)}}))...)
	if err != nil {
		return 0, fmt.Errorf("read %s/%d: %w", changelog, partition, err)
	}
	defer cl.Close()
	for next := from; next < end; {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			return 0, fmt.Errorf("read %s/%d: %w", changelog, partition, err)
		}
		var recs []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) == 0 {
			continue
		}
		if err := fn(recs); err != nil {
			return 0, err
		}
		next = recs[len(recs)-1].Offset + 1
	}
	return end, nil
}

// changelogWait bounds how long a changelog partition's end offset may
// stay unknown. A topic created at this start may be missing from the
// client's metadata, which it caches for seconds, or have no leader yet.
const changelogWait = 30 * time.Second

// changelogEnd returns a changelog partition's end offset, asking again
// while the partition is unknown, up to changelogWait.
func (in *Ingester) changelogEnd(ctx context.Context, changelog string, partition int32) (int64, error) {
	deadline := time.Now().Add(changelogWait)
	for {
		ends, err := in.admin.ListEndOffsets(ctx, changelog)
		if err != nil {
			return 0, fmt.Errorf("changelog end offsets: %w", err)
		}
		end, ok := ends.Lookup(changelog, partition)
		switch {
		case ok && end.Err == nil:
			return end.Offset, nil
		case ok && (!kerr.IsRetriable(end.Err) || time.Now().After(deadline)):
			return 0, fmt.Errorf("changelog %s/%d end offset: %w", changelog, partition, end.Err)
		case !ok && time.Now().After(deadline):
			return 0, fmt.Errorf("changelog %s/%d: no end offset listed in %v", changelog, partition, changelogWait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
