package ingest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/store/online"
	onlineredis "github.com/quiver-ml/quiver/store/online/redis"
)

// Why a changelog partition is seeded: the label of
// quiver_ingest_redis_seeds_total.
const (
	seedAssigned = "assigned" // unseeded when this instance was assigned it
	seedLost     = "lost"     // Redis lost it while this instance owned it
)

// unseeded is a changelog partition whose states Redis may not hold, and why.
type unseeded struct {
	view      *viewRoute
	partition int32
	why       error
}

// findUnseeded returns those of the given changelog partitions whose states
// Redis may not hold, as their seeded markers say (onlineredis.Markers).
func findUnseeded(ctx context.Context, m *onlineredis.Markers, parts map[*viewRoute][]int32) ([]unseeded, error) {
	var out []unseeded
	for v, ps := range parts {
		why, err := m.Unseeded(ctx, online.TableOf(v.engine.View()), ps)
		if err != nil {
			return nil, err
		}
		for _, p := range slices.Sorted(maps.Keys(why)) {
			out = append(out, unseeded{view: v, partition: p, why: why[p]})
		}
	}
	return out, nil
}

// seedRedis writes to Redis every state of those of the given changelog
// partitions that Redis does not hold: ingest writes an entity's state to
// Redis only when it applies an event, so a deployment moved to Redis, or a
// Redis that lost its data, would otherwise miss every entity without a new
// event. Run before the partitions are consumed, by their owner.
func (in *Ingester) seedRedis(ctx context.Context, parts map[*viewRoute][]int32) error {
	m, err := onlineredis.LoadMarkers(ctx, in.cfg.Redis, in.cfg.TopicPrefix)
	if err != nil {
		return err
	}
	todo, err := findUnseeded(ctx, m, parts)
	if err != nil {
		return err
	}
	for _, u := range todo {
		if err := in.seedPartition(ctx, m, u, seedAssigned); err != nil {
			return err
		}
	}
	return nil
}

// redisCheckInterval is how often a running ingest checks that Redis still
// holds the states of the partitions it owns (checkRedis). A check that
// fails is tried again at the next tick: while Redis does not answer,
// serve is not ready either, and ingest's next flush to Redis fails and
// stops it.
const redisCheckInterval = time.Second

// checkRedis writes again every state of the changelog partitions this
// instance owns whose seeded markers say Redis lost them since they were
// seeded: FLUSHALL, a restart (without persistence, or from an older
// snapshot), a failover, on any master of a cluster. Until then serve is
// not ready.
func (in *Ingester) checkRedis(ctx context.Context) error {
	in.mu.Lock()
	owned := in.ownedChangelogs()
	in.mu.Unlock()
	if len(owned) == 0 {
		return nil
	}
	m, err := onlineredis.LoadMarkers(ctx, in.cfg.Redis, in.cfg.TopicPrefix)
	if err != nil {
		return err
	}
	lost, err := findUnseeded(ctx, m, owned)
	if err != nil {
		return err
	}
	if len(lost) == 0 {
		return nil
	}
	in.log.Warn("redis lost states: writing them again from the changelog", "changelog_partitions", len(lost), "err", lost[0].why)
	for _, u := range lost {
		if err := in.reseed(ctx, m, u); err != nil {
			return err
		}
	}
	return nil
}

// reseed seeds a changelog partition that Redis lost, if this instance
// still owns it, under in.mu: once the batch in flight is durable, and
// before another starts, so that no state is written to Redis meanwhile
// and the changelog holds every state written before. Redis then holds the
// latest state of every entity: nothing is lost, and since states are
// written whole, not added to, nothing is applied twice. Batches of other
// partitions go on between two reseeds.
func (in *Ingester) reseed(ctx context.Context, m *onlineredis.Markers, u unseeded) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !slices.Contains(in.ownedChangelogs()[u.view], u.partition) {
		return nil // revoked meanwhile: its next owner seeds it
	}
	if err := in.waitFlush(); err != nil {
		in.fail(err) // Run returns it
		return nil
	}
	return in.seedPartition(ctx, m, u, seedLost)
}

// ownedChangelogs returns the changelog partitions of the repartition
// partitions this instance owns, by view; callers hold in.mu.
func (in *Ingester) ownedChangelogs() map[*viewRoute][]int32 {
	owned := map[*viewRoute][]int32{}
	for topic, parts := range in.assigned {
		er := in.entries[topic]
		if er == nil {
			continue // a source topic
		}
		for p := range parts {
			for _, views := range er.views {
				for _, v := range views {
					owned[v] = append(owned[v], p)
				}
			}
		}
	}
	return owned
}

// seedPartition writes a changelog partition's states to Redis, the whole
// changelog in order, between the two writes of its marker.
func (in *Ingester) seedPartition(ctx context.Context, m *onlineredis.Markers, u unseeded, reason string) error {
	began := time.Now()
	v, partition := u.view, u.partition
	view := v.engine.View()
	table := online.TableOf(view)
	if err := m.Begin(ctx, table, partition, in.parts); err != nil {
		return err
	}
	var records int64
	end, err := in.readChangelog(ctx, v.changelog, partition, 0, func(recs []*kgo.Record) error {
		pipe := in.cfg.Redis.Pipeline()
		for _, r := range recs {
			key := v.redisKey + string(r.Key)
			// A state lives the view's TTL from when ingest wrote it (the
			// record's time), as it would have in Redis: a state long
			// unchanged is not brought back for another TTL.
			ttl := view.TTL
			if ttl > 0 {
				ttl -= max(time.Since(r.Timestamp), 0) // a clock ahead of this one's
			}
			if r.Value == nil || view.TTL > 0 && ttl < time.Millisecond {
				pipe.Del(ctx, key)
			} else {
				pipe.Set(ctx, key, r.Value, ttl)
			}
		}
		records += int64(len(recs))
		_, err := pipe.Exec(ctx)
		return err
	})
	if err == nil {
		err = m.Done(ctx, table, partition, onlineredis.Marker{Partitions: in.parts, Records: records, EndOffset: end})
	}
	if err != nil {
		return fmt.Errorf("seed redis from %s/%d: %w", v.changelog, partition, err)
	}
	in.metrics.redisSeeds.WithLabelValues(view.Ref(), reason).Inc()
	in.log.Info("redis seeded from changelog", "topic", v.changelog, "partition", partition, "reason", reason,
		"records", records, "took", time.Since(began).Round(time.Millisecond))
	return nil
}
