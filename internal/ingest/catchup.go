package ingest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// The start lock keeps ingest's start (creating topics, and catching view
// versions up) to one instance at a time: a rollout of a new version starts
// every instance at once, and two that caught it up together would write
// its feature log twice and overwrite each other's changelog records. Its
// holder renews it in the background, so its time to live is short: a
// restart after a crash waits at most that long (on the same machine, not
// at all: offline.Lock tells that the holder is gone).
const (
	startLockDir  = "_replay"
	startLockTTL  = time.Minute
	startLockPoll = 2 * time.Second
)

// start prepares the topics and catches view versions up, holding the
// offline store's start lock; it returns the consumed topics' details.
func (in *Ingester) start(ctx context.Context, topics []string) (kadm.TopicDetails, error) {
	if in.cfg.Offline == nil { // nothing to catch up from
		return in.prepareTopics(ctx, topics)
	}
	l, err := in.lockStart(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	held, stop := l.Hold(ctx)
	defer stop()
	details, err := in.prepareTopics(held, topics)
	if err == nil {
		err = in.catchUp(held)
	}
	if cause := context.Cause(held); err != nil && ctx.Err() == nil && cause != nil {
		err = fmt.Errorf("start: %w", cause) // the lock was lost
	}
	return details, err
}

// lockStart takes the start lock, waiting while another instance holds it.
func (in *Ingester) lockStart(ctx context.Context) (*offline.Lease, error) {
	for try := 0; ; try++ {
		l, err := in.cfg.Offline.Lock(ctx, startLockDir, "starting", startLockTTL)
		if !errors.Is(err, offline.ErrLocked) {
			return l, err
		}
		if try == 0 {
			in.log.Info("waiting for another instance to start", "lock", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another instance to start: %w", ctx.Err())
		case <-time.After(startLockPoll):
		}
	}
}

// markNewViews writes a pending replay marker for every view version whose
// changelog does not exist yet, before it is created: the version is then
// replayed from the whole event log by catchUp, now or, after a crash, at
// the next start. A pending marker already there stays: a backfill replay
// --from that failed part way left it, and the replay keeps its --from.
func (in *Ingester) markNewViews(ctx context.Context, topics map[string]map[string]*string) error {
	if in.cfg.Offline == nil {
		return nil
	}
	var changelogs []string
	for t := range topics {
		if in.findView(t) != nil {
			changelogs = append(changelogs, t)
		}
	}
	details, err := in.admin.ListTopics(ctx, changelogs...)
	if err != nil {
		return fmt.Errorf("list changelogs: %w", err)
	}
	for _, t := range changelogs {
		if d, ok := details[t]; ok && d.Err == nil {
			continue
		}
		view := in.findView(t).engine.View()
		m, ok, err := replay.ReadMarker(ctx, in.cfg.Offline, view)
		if err != nil {
			return err
		}
		if ok && len(m.Covered) == 0 {
			continue
		}
		if err := replay.WriteMarker(ctx, in.cfg.Offline, view, replay.Marker{}); err != nil {
			return err
		}
	}
	return nil
}

// markRemovedViews writes a pending replay marker for every view version
// that has a changelog but is no longer defined, of a view still defined or
// of a source ingest consumes, unless it has one: while it is not defined,
// nothing computes it, and its changelog falls behind for good. Defined
// again, it is then replayed from the whole event log by catchUp, rather
// than resume from the group's offsets, past every event in between.
// (Another ingest group sharing the topic prefix and a source, computing
// the version, would replay it at its next start: correct, if slow.)
func (in *Ingester) markRemovedViews(ctx context.Context) error {
	if in.cfg.Offline == nil {
		return nil
	}
	topics, err := in.admin.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list changelogs: %w", err)
	}
	reg := features.NewRegistry(in.cfg.Offline)
	for _, t := range topics.Names() {
		name, version, ok := parseChangelog(in.cfg.TopicPrefix, t)
		if !ok || in.cfg.Definitions.View(name, version) != nil {
			continue
		}
		rec, err := reg.Lookup(ctx, name, version)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a version of this registry
		}
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(in.cfg.Definitions.Views, func(v *features.View) bool { return v.Name == name }) && in.sources[rec.Definition["source"]] == nil {
			continue
		}
		view := &features.View{Name: name, Version: version}
		_, marked, err := replay.ReadMarker(ctx, in.cfg.Offline, view)
		if err != nil {
			return err
		}
		if marked {
			continue
		}
		if err := replay.WriteMarker(ctx, in.cfg.Offline, view, replay.Marker{}); err != nil {
			return err
		}
		in.log.Info("view version no longer defined: defined again, it is replayed from the whole event log", "view", view.Ref())
	}
	return nil
}

// parseChangelog returns the view and version of a changelog topic's name.
func parseChangelog(prefix, topic string) (view string, version int, ok bool) {
	rest, ok := strings.CutPrefix(topic, prefix+".changelog.")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndex(rest, ".v")
	if i < 0 {
		return "", 0, false
	}
	version, err := strconv.Atoi(rest[i+2:])
	if err != nil || version < 1 || online.ChangelogTopic(prefix, online.Table{View: rest[:i], Version: version}) != topic {
		return "", 0, false
	}
	return rest[:i], version, true
}

// catchUp brings view versions with a replay marker up to date with the
// offline event log, before the group is joined: a version ingest has just
// created (a pending marker) from the whole log, one backfill replay
// bootstrapped from the offsets its marker records. The marker goes last,
// so a crash part way replays again; from then on, the applied offsets in
// the records make every redelivered event a no-op.
//
// Add a version with every instance of the group stopped, then start them
// with the new definitions: an instance still running the old ones would
// commit events the version never sees. The start lock keeps two new ones
// from catching up at once.
func (in *Ingester) catchUp(ctx context.Context) error {
	if in.cfg.Offline == nil {
		return nil
	}
	for _, er := range in.entries {
		for _, views := range er.views {
			for _, v := range views {
				view := v.engine.View()
				m, ok, err := replay.ReadMarker(ctx, in.cfg.Offline, view)
				if err != nil {
					return err
				}
				if !ok {
					continue // computed live all along
				}
				if err := in.catchUpView(ctx, v, m); err != nil {
					return fmt.Errorf("catch up %s: %w", view.Ref(), err)
				}
				if err := replay.RemoveMarker(ctx, in.cfg.Offline, view); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// catchUpMemory bounds the events a catch-up holds; more are spilled to
// the temporary directory. Ingest's memory is sized for streaming, and a
// bootstrap replays the whole log.
const catchUpMemory = 256 << 20

func (in *Ingester) catchUpView(ctx context.Context, v *viewRoute, m replay.Marker) error {
	view, off := v.engine.View(), in.cfg.Offline
	cl, err := kgo.NewClient(in.cfg.kafka(kgo.ProducerBatchMaxBytes(online.MaxRecordBytes))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	cfg := replay.Config{Definitions: in.cfg.Definitions, View: view, Offline: off, Since: m.Since, MemoryLimit: catchUpMemory}
	run := func(publish func(*replay.Bucket) error) error {
		began := time.Now()
		res, err := replay.Run(ctx, cfg, publish)
		if err != nil {
			return err
		}
		in.log.Info("view caught up from the event log", "view", view.Ref(), "after", cfg.After, "since", cfg.Since,
			"events", res.Events, "applied", res.Applied, "rows", res.Rows, "entities", res.Entities, "buckets", res.Buckets,
			"took", time.Since(began).Round(time.Millisecond))
		return nil
	}
	if len(m.Covered) == 0 {
		// Pending: the version is computed anew from the whole log, as
		// backfill replay computes it, replacing what an interrupted replay
		// published and logged.
		if _, err := off.RemoveLog(ctx, offline.FeatureLogDir(view)); err != nil {
			return err
		}
		cfg.Rows = "replay/" + ksuid.New().String()
		return run(func(b *replay.Bucket) error {
			return replay.Replace(ctx, cl, in.cfg.kafka(), in.cfg.TopicPrefix, in.cfg.Definitions, view, b, in.cfg.Redis)
		})
	}
	cfg.Load = func(ctx context.Context, keys []string) (map[string]*replay.Entity, error) {
		return in.loadStates(ctx, v, keys)
	}
	publish := func(b *replay.Bucket) error {
		return replay.Publish(ctx, cl, in.cfg.TopicPrefix, in.cfg.Definitions, view, b.Entities, in.cfg.Redis)
	}
	// Until the log has nothing more: an ingest without the version may
	// have logged events between a crash part way and this start.
	for ran := false; ; ran = true {
		if m.Rows == "" {
			to, err := replay.LogMarks(ctx, off, v.source)
			if err != nil {
				return err
			}
			if maps.Equal(to, m.Covered) {
				if !ran { // what the runbook watches for, nothing to apply
					in.log.Info("view caught up from the event log", "view", view.Ref(), "after", m.Covered, "events", 0)
				}
				return nil
			}
			// Recorded before anything is written: a rerun after a crash
			// replays the same events, and writes no feature log row twice.
			m.To, m.Rows = to, "catchup/"+ksuid.New().String()
			if err := replay.WriteMarker(ctx, off, view, m); err != nil {
				return err
			}
		}
		cfg.After, cfg.To, cfg.Rows = m.Covered, m.To, m.Rows
		if err := run(publish); err != nil {
			return err
		}
		m = replay.Marker{Covered: m.To, Since: m.Since}
	}
}

// loadStates returns the states of keys that the view's changelog holds.
func (in *Ingester) loadStates(ctx context.Context, v *viewRoute, keys []string) (map[string]*replay.Entity, error) {
	recs := make(map[string][]byte, len(keys))
	for _, k := range keys {
		recs[k] = nil
	}
	err := replay.ScanChangelog(ctx, in.cfg.kafka(), v.changelog, func(key, value []byte) {
		if _, ok := recs[string(key)]; ok {
			recs[string(key)] = value
		}
	})
	if err != nil {
		return nil, err
	}
	ents := map[string]*replay.Entity{}
	for k, rec := range recs {
		if rec == nil {
			continue
		}
		st, applied, err := online.DecodeState(v.engine, rec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		ents[k] = &replay.Entity{State: st, Applied: applied}
	}
	return ents, nil
}
