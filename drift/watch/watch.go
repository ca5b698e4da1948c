// Package watch runs drift detectors over the prediction log: a consumer
// group on <prefix>.predictions (keyed by model, so each model has one
// owner), a detector per model version as its model.yaml configures it, and
// one retraining event per sustained breach to <prefix>.retrain.
//
// Events are sent once. The committed offset of a partition is where its
// detectors' open windows begin, or the breaching windows before them that a
// breach in progress still needs, so a restarted or new owner rebuilds both
// from the log. The offset is the earliest of its versions'; the commit's
// metadata keeps each version's own, and a version skips the records before
// it, so that its windows are the same after a restart as before. The last
// event of each model, read back from the retrain topic when partitions are
// assigned, starts the cooldown again, so a breach replayed after a crash
// is not sent twice.
//
// A time window is scored when a prediction past its end comes or, on a
// partition processed up to its end, once the clock is LateWait past it;
// a prediction of a window already scored counts in the next. Predictions
// whose time is more than a minute from their record's timestamp are
// skipped, and a version without predictions for ten minutes, or for a
// longer time window until its last prediction has left it, is forgotten
// (a retired canary must not hold the committed offset back).
// A version's model.yaml is read when it is first seen: edits to its drift
// section take effect when ingest restarts.
package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/kafkaclient"
	"github.com/quiver-ml/quiver/model"
)

// Config is what New needs.
type Config struct {
	Brokers     []string              // required
	KafkaOpts   []kgo.Opt             // TLS and SASL, for every Kafka client
	Models      string                // the model repository, required
	Definitions *features.Definitions // required
	TopicPrefix string                // default quiver
	GroupID     string                // default quiver-drift
	// InstanceID and SessionTimeout are the group membership's, as
	// ingest's: a static instance takes its partitions back at once.
	InstanceID     string
	SessionTimeout time.Duration
	// Source is the CloudEvents source of retraining events; default
	// /quiver/drift.
	Source  string
	Webhook *Webhook // optional second delivery of each event
	// CommitInterval is how often consumed offsets are committed; default
	// one second.
	CommitInterval time.Duration
	// LateWait is how long after a time window ends it waits for late
	// predictions before it is scored, when no later prediction has come
	// to close it; default 30 seconds.
	LateWait   time.Duration
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers none
}

// kafka returns the options of a Kafka client: the brokers, KafkaOpts,
// then extra.
func (c *Config) kafka(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.KafkaOpts, extra)
}

// Monitor watches the prediction log; see the package documentation.
type Monitor struct {
	cfg          Config
	client       *kgo.Client
	admin        *kadm.Client
	log          *slog.Logger
	m            *metrics
	predictions  string
	retrain      string
	webhookQueue chan []byte

	mu       sync.Mutex // the poll loop and the rebalance callbacks
	versions map[version]*watched
	sent     map[string]sent  // model → its last event
	next     map[int32]int64  // partition → offset after the last record processed
	ends     map[int32]int64  // partition → its end, as its last fetch told
	resume   map[int32]starts // partition → where its versions' windows began at the last commit
	fatal    error
	inputs   []float32      // scratch
	skipWarn rate.Sometimes // a skipped prediction's warning, at most every minute
}

// starts is where the versions of a partition begin: model → version →
// the first offset its detector has not evaluated, in a commit's metadata.
type starts map[string]map[int]int64

func (st starts) of(v version) int64 { return st[v.model][v.version] }

func (st starts) set(v version, offset int64) {
	if st[v.model] == nil {
		st[v.model] = map[int]int64{}
	}
	st[v.model][v.version] = offset
}

// maxMetadata keeps a commit's metadata under Kafka's default limit
// (offset.metadata.max.bytes, 4096); a partition with more versions than
// fit commits none, and its versions start over at its committed offset.
const maxMetadata = 4000

type version struct {
	model   string
	version int
}

func (v version) String() string { return v.model + "@" + strconv.Itoa(v.version) }

// sent is a model's last retraining event: the version it was for, and
// the end of the window that asked for it.
type sent struct {
	version int
	end     time.Time
}

type watched struct {
	det       *drift.Detector // nil: not watched
	partition int32
	retryAt   time.Time // when not watched: when to look at it again
	seen      time.Time // its last prediction, wall clock
}

const (
	// maxClockSkew bounds how far a prediction's time may be from its
	// record's timestamp.
	maxClockSkew = time.Minute
	// idleVersion: a version without predictions this long is forgotten,
	// its open window with it, so that it no longer holds back the
	// partition's committed offset (a retired canary); a version with a
	// longer time window, once its last prediction has left the window.
	idleVersion = 10 * time.Minute
)

// New connects to the brokers and creates the prediction log and retrain
// topics if they are missing.
func New(ctx context.Context, cfg Config) (*Monitor, error) {
	if cfg.Models == "" || cfg.Definitions == nil || len(cfg.Brokers) == 0 {
		return nil, errors.New("watch: brokers, models and definitions are required")
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = "quiver"
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "quiver-drift"
	}
	if cfg.Source == "" {
		cfg.Source = "/quiver/drift"
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.LateWait == 0 {
		cfg.LateWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{cfg: cfg, log: cfg.Logger,
		predictions: cfg.TopicPrefix + ".predictions", retrain: cfg.TopicPrefix + ".retrain",
		versions: map[version]*watched{}, sent: map[string]sent{}, next: map[int32]int64{}, ends: map[int32]int64{}, resume: map[int32]starts{},
		skipWarn: rate.Sometimes{First: 1, Interval: time.Minute},
	}
	var err error
	if m.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		// The group is joined when Run adds the topic: a rebalance's
		// callbacks use the client and admin New has yet to set.
		kgo.ConsumerGroup(cfg.GroupID),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(m.onAssigned),
		kgo.OnPartitionsRevoked(m.onRevoked),
		kgo.OnPartitionsLost(m.onLost),
		kgo.OnOffsetsFetched(m.onFetched),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	m.client, err = kgo.NewClient(cfg.kafka(opts...)...)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	m.admin = kadm.NewClient(m.client)
	for _, t := range []string{m.predictions, m.retrain} {
		resp, err := m.admin.CreateTopic(ctx, -1, -1, nil, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			m.client.Close()
			return nil, fmt.Errorf("watch: create topic %s: %w", t, err)
		}
	}
	if cfg.Webhook != nil {
		m.webhookQueue = make(chan []byte, 64)
	}
	return m, nil
}

// Run watches until ctx ends, then commits what it processed. It returns an
// error when it cannot go on: a retraining event that could not be sent is
// one, for the process's supervisor to restart it, and the breach to be
// found again.
func (m *Monitor) Run(ctx context.Context) error {
	defer m.close()
	if m.webhookQueue != nil {
		go m.deliver(ctx)
	}
	m.client.AddConsumeTopics(m.predictions)
	m.log.Info("drift detectors watching", "topic", m.predictions, "group", m.cfg.GroupID, "models", m.cfg.Models)
	lastCommit := time.Now()
	for {
		// Polls wait at most a commit interval: commits go on while idle.
		poll, cancel := context.WithTimeout(ctx, m.cfg.CommitInterval)
		fetches := m.client.PollFetches(poll)
		cancel()
		if ctx.Err() != nil {
			break
		}
		var err error
		fetches.EachError(func(t string, p int32, e error) {
			switch {
			case errors.Is(e, context.DeadlineExceeded):
			case errors.Is(e, kgo.ErrClientClosed):
				err = e
			default:
				m.log.Warn("drift: fetch", "topic", t, "partition", p, "err", e)
			}
		})
		m.mu.Lock()
		if err == nil {
			err = m.fatal
		}
		for it := fetches.RecordIter(); err == nil && !it.Done(); {
			err = m.process(ctx, it.Next())
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Err == nil {
				m.ends[p.Partition] = p.HighWatermark
			}
		})
		if err == nil {
			err = m.tick(ctx)
		}
		if err == nil && time.Since(lastCommit) >= m.cfg.CommitInterval {
			// A failed commit (a rebalance under way) is tried again at the
			// next interval; what it would have covered is replayed at worst.
			if cerr := m.commit(ctx); cerr != nil {
				m.log.Warn("drift: commit", "err", cerr)
			}
			lastCommit = time.Now()
		}
		m.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				break // stopping in the middle of sending: the replay finds the breach again
			}
			return err
		}
		m.client.AllowRebalance()
	}
	// Commit what was processed; the group lets the partitions go on
	// close, with nothing left to commit.
	stop, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.commit(stop)
	clear(m.next)
	return err
}

// commitTimeout bounds a commit at a rebalance or when stopping: a broker
// that does not answer must not hold a rebalance, or a stopping process
// past its supervisor's grace period. The next owner of the partitions
// replays from the last commit instead.
const commitTimeout = 5 * time.Second

// close leaves the group and closes the client, waiting at most
// kafkaclient.Timeout.
func (m *Monitor) close() {
	if err := kafkaclient.Close(m.client); err != nil {
		m.log.Warn("drift: stopping", "err", err)
	}
}

// process runs a prediction through its version's detector, and sends a
// retraining event when the detector finds a sustained breach.
func (m *Monitor) process(ctx context.Context, r *kgo.Record) error {
	m.next[r.Partition] = r.Offset + 1
	var p drift.Prediction
	if err := gojson.Unmarshal(r.Value, &p); err != nil || p.Model == "" || len(p.Output) == 0 || p.Time.IsZero() {
		m.m.skipped.WithLabelValues("invalid").Inc()
		return nil
	}
	// Windows and cooldowns run on prediction time: one from a broken
	// clock would stall time windows and silence the model's events, so it
	// must agree with when the record was produced.
	if d := p.Time.Sub(r.Timestamp); d > maxClockSkew || d < -maxClockSkew {
		m.m.skipped.WithLabelValues("time").Inc()
		m.skipWarn.Do(func() {
			m.log.Warn("drift: a prediction whose time is over a minute from its record's timestamp; skipped, as are others like it (quiver_drift_predictions_skipped_total)",
				"model", p.Model, "version", p.Version, "time", p.Time, "record_timestamp", r.Timestamp, "partition", r.Partition, "offset", r.Offset)
		})
		return nil
	}
	v := version{p.Model, p.Version}
	w := m.watch(v, r.Partition)
	if w.det == nil {
		m.m.skipped.WithLabelValues("unwatched").Inc()
		return nil
	}
	if r.Offset < m.resume[r.Partition].of(v) {
		return nil // evaluated before the last commit
	}
	m.inputs = m.inputs[:0]
	for _, x := range p.Inputs {
		m.inputs = append(m.inputs, float32(x))
	}
	w.seen = time.Now()
	ev, err := w.det.Add(p.Time, m.inputs, float32(p.Output[0]), r.Offset)
	if err != nil {
		m.m.skipped.WithLabelValues("invalid").Inc()
		m.skipWarn.Do(func() {
			m.log.Warn("drift: a prediction that does not fit its model; skipped, as are others like it (quiver_drift_predictions_skipped_total)",
				"model", p.Model, "version", p.Version, "err", err, "partition", r.Partition, "offset", r.Offset)
		})
		return nil
	}
	if err := m.evaluated(ctx, v, w.det, ev); err != nil {
		return err
	}
	m.m.predictions.WithLabelValues(v.model, strconv.Itoa(v.version)).Inc()
	return nil
}

// evaluated records a window's evaluation, if there is one, and sends a
// retraining event when it completes a sustained breach.
func (m *Monitor) evaluated(ctx context.Context, v version, det *drift.Detector, ev *drift.Evaluation) error {
	if ev == nil {
		return nil
	}
	m.m.observe(v, ev)
	if ev.Sustained(det.Config()) {
		return m.breach(ctx, v, det, ev)
	}
	return nil
}

// tick scores the time windows that ended LateWait ago with no later
// prediction to close them. Only on partitions processed up to their end:
// while a partition is behind (a restart replaying it), its predictions
// close its windows, as they did the first time.
func (m *Monitor) tick(ctx context.Context) error {
	now := time.Now().Add(-m.cfg.LateWait)
	for v, w := range m.versions {
		if w.det == nil || m.next[w.partition] < m.ends[w.partition] {
			continue
		}
		if err := m.evaluated(ctx, v, w.det, w.det.Tick(now)); err != nil {
			return err
		}
	}
	return nil
}

// watch returns the detector of a version, loading it the first time the
// version is seen (and again a while after it failed to load: the version
// may not have reached this machine yet).
func (m *Monitor) watch(v version, partition int32) *watched {
	w := m.versions[v]
	if w != nil && (w.det != nil || time.Now().Before(w.retryAt)) {
		return w
	}
	det, err := model.LoadDetector(m.cfg.Models, m.cfg.Definitions, v.model, v.version)
	w = &watched{det: det, partition: partition}
	switch {
	case errors.Is(err, os.ErrNotExist) && !exists(filepath.Join(m.cfg.Models, v.model, strconv.Itoa(v.version))):
		w.retryAt = time.Now().Add(10 * time.Second)
		m.log.Warn("drift: a version not in the model repository; not watched", "model", v.model, "version", v.version)
	case err != nil:
		w.retryAt = time.Now().Add(time.Minute)
		m.log.Error("drift: cannot watch a version", "model", v.model, "version", v.version, "err", err)
	case det == nil:
		w.retryAt = time.Now().Add(time.Minute) // its model.yaml may gain a profile
		m.log.Info("drift: a version without a profile, or with drift disabled; not watched", "model", v.model, "version", v.version)
	default:
		m.m.watching(v)
		cfg := det.Config()
		m.log.Info("drift: watching a version", "model", v.model, "version", v.version, "columns", det.Columns(),
			"window", cfg.Window.String(), "slide", cfg.Slide.String(), "psi", cfg.PSI, "js", cfg.JS, "consecutive", cfg.Consecutive, "cooldown", time.Duration(*cfg.Cooldown))
	}
	m.versions[v] = w
	return w
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// breach sends one retraining event for a sustained breach, unless the
// model is cooling down from its last one.
func (m *Monitor) breach(ctx context.Context, v version, det *drift.Detector, ev *drift.Evaluation) error {
	if last, ok := m.sent[v.model]; ok && (!ev.End.After(last.end) || ev.End.Before(last.end.Add(time.Duration(*det.Config().Cooldown)))) {
		m.m.suppressed.WithLabelValues(v.model).Inc()
		if last.version == v.version && last.end.Equal(ev.End) {
			// A replay of the window whose event was sent before a restart:
			// its breach starts over, as it did when the event went out.
			det.ResetStreak()
		}
		return nil
	}
	b, id, err := drift.NewRetrain(v.model, v.version, det, ev).Encode(m.cfg.Source, time.Now())
	if err != nil {
		return fmt.Errorf("encode a retraining event: %w", err)
	}
	rec := &kgo.Record{Topic: m.retrain, Key: []byte(v.model), Value: b,
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte(drift.ContentType)}}}
	if err := m.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("send a retraining event for %s: %w", v, err)
	}
	m.sent[v.model] = sent{v.version, ev.End}
	det.ResetStreak()
	m.m.events.WithLabelValues(v.model).Inc()
	var drifted []string
	for _, s := range ev.Scores {
		if s.Drifted {
			drifted = append(drifted, s.Feature)
		}
	}
	m.log.Warn("drift: retraining requested", "model", v.model, "version", v.version, "id", id, "drifted", drifted,
		"window_start", ev.Start, "window_end", ev.End, "topic", m.retrain)
	if m.webhookQueue != nil {
		select {
		case m.webhookQueue <- b:
		default:
			m.m.webhook.WithLabelValues("dropped").Inc()
			m.log.Error("drift: webhook queue full; event not delivered by webhook", "id", id)
		}
	}
	return nil
}

// prune forgets the versions watched without predictions for a while
// (idle), and those not watched once they are due to be looked at again
// (watch looks when one is next seen), so that records naming versions
// that do not exist do not pile up.
func (m *Monitor) prune() {
	for v, w := range m.versions {
		switch {
		case w.det == nil && !time.Now().Before(w.retryAt):
			delete(m.versions, v)
		case w.det != nil && time.Since(w.seen) > m.idle(w.det.Config()):
			delete(m.versions, v)
			m.m.forget(v)
			m.log.Info("drift: a version without predictions for a while; forgotten", "model", v.model, "version", v.version, "idle", m.idle(w.det.Config()))
		}
	}
}

// idle is how long a version watched under cfg goes without predictions
// before it is forgotten, its open window with it: idleVersion, or for a
// time window until its last prediction has left it, so that sparse
// traffic still fills windows.
func (m *Monitor) idle(cfg drift.Config) time.Duration {
	return max(idleVersion, cfg.Window.Duration+cfg.Slide.Duration+m.cfg.LateWait)
}

// commit commits, for each partition processed, where its detectors'
// windows (and breaches in progress) begin, or past its last record when
// they hold none of it, with where each version's windows begin as
// metadata.
func (m *Monitor) commit(ctx context.Context) error {
	if len(m.next) == 0 {
		return nil
	}
	at := map[int32]int64{}
	begin := map[int32]starts{}
	for p, next := range m.next {
		at[p] = next
		begin[p] = starts{}
	}
	m.prune()
	for v, w := range m.versions {
		if w.det == nil {
			continue
		}
		from := w.det.From()
		if from < 0 {
			from = m.next[w.partition]
		}
		at[w.partition] = min(at[w.partition], from)
		begin[w.partition].set(v, from)
	}
	offsets := map[int32]kgo.EpochOffset{}
	metadata := map[int32]*string{}
	for p, o := range at {
		offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
		if b, err := gojson.Marshal(begin[p]); err == nil && len(b) <= maxMetadata {
			metadata[p] = new(string(b))
		}
	}
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				if p := &req.Topics[i].Partitions[j]; req.Topics[i].Topic == m.predictions {
					p.Metadata = metadata[p.Partition]
				}
			}
		}
		return nil
	})
	var err error
	m.client.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{m.predictions: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, e error) {
			if err = e; err != nil {
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					err = cmp.Or(err, kerr.ErrorForCode(p.ErrorCode))
				}
			}
		})
	if err != nil {
		return fmt.Errorf("commit drift offsets: %w", err)
	}
	return nil
}

func (m *Monitor) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, loadSentTimeout)
	defer cancel()
	if err := m.loadSent(ctx); err != nil {
		m.fatal = fmt.Errorf("read the last retraining events: %w", err)
	}
	m.log.Info("drift: partitions assigned", "partitions", assigned[m.predictions])
}

// onFetched reads where each version of the assigned partitions began at
// their last commit.
func (m *Monitor) onFetched(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	note := func(topic string, partition int32, metadata *string) {
		if topic != m.predictions {
			return
		}
		var st starts
		if metadata != nil && *metadata != "" {
			if err := gojson.Unmarshal([]byte(*metadata), &st); err != nil {
				st = nil
				m.log.Warn("drift: committed metadata that is not where versions began; they start at the committed offset", "partition", partition, "err", err)
			}
		}
		m.resume[partition] = st
	}
	for _, t := range resp.Topics { // before v8
		for _, p := range t.Partitions {
			note(t.Topic, p.Partition, p.Metadata)
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				note(t.Topic, p.Partition, p.Metadata)
			}
		}
	}
	return nil
}

func (m *Monitor) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	if err := m.commit(ctx); err != nil {
		m.log.Warn("drift: commit before a rebalance", "err", err)
	}
	m.drop(revoked[m.predictions])
}

func (m *Monitor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop(lost[m.predictions])
}

// drop forgets the detectors of partitions another owner takes over.
func (m *Monitor) drop(parts []int32) {
	for _, p := range parts {
		delete(m.next, p)
		delete(m.ends, p)
		delete(m.resume, p)
		for v, w := range m.versions {
			if w.partition == p {
				delete(m.versions, v)
				m.m.forget(v)
			}
		}
	}
}

// readSent notes a retraining event read back from the retrain topic.
func (m *Monitor) readSent(r *kgo.Record) {
	_, ev, err := drift.DecodeRetrain(r.Value)
	if err != nil {
		m.log.Warn("drift: a record of the retrain topic that is not a retraining event", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if ev.Window.End.After(m.sent[ev.Model].end) {
		m.sent[ev.Model] = sent{ev.Version, ev.Window.End}
	}
}

// retrainOffsets lists the retrain topic's start and end offsets; an error
// of any partition is the error.
func (m *Monitor) retrainOffsets(ctx context.Context) (starts, ends kadm.ListedOffsets, err error) {
	if starts, err = m.admin.ListStartOffsets(ctx, m.retrain); err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	if ends, err = m.admin.ListEndOffsets(ctx, m.retrain); err == nil {
		err = ends.Error()
	}
	return starts, ends, err
}

// loadSentTimeout bounds reading the retrain topic back: past it the
// monitor stops with an error rather than hold the group's rebalance.
const loadSentTimeout = 30 * time.Second

// loadSent reads the retrain topic for the window end of each model's last
// event: each partition up to the end listed first, or to its high-water
// mark, whichever a fetch reaches (the last offsets may hold no record).
func (m *Monitor) loadSent(ctx context.Context) error {
	starts, ends, err := m.retrainOffsets(ctx)
	for kerr.IsRetriable(err) {
		// New created the topic: a broker may not know it, or its
		// leader, yet.
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		starts, ends, err = m.retrainOffsets(ctx)
	}
	if err != nil {
		return err
	}
	from := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition → its last offset
	ends.Each(func(e kadm.ListedOffset) {
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok && e.Offset > s.Offset {
			from[e.Partition] = kgo.NewOffset().At(s.Offset)
			left[e.Partition] = e.Offset - 1
		}
	})
	if len(from) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(m.cfg.kafka(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.retrain: from}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(left) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetches.Err(); err != nil {
			return err
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				m.readSent(r)
			}
			if n := len(p.Records); n > 0 && (p.Records[n-1].Offset >= left[p.Partition] || p.Records[n-1].Offset+1 >= p.HighWatermark) {
				delete(left, p.Partition)
			}
		})
	}
	return nil
}
