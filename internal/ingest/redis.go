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

// seedRedis writes to Redis every state of those of the given changelog
// partitions that Redis does not hold, as their seeded markers say
// (onlineredis.Markers): ingest writes an entity's state to Redis only when
// it applies an event, so a deployment moved to Redis, or a Redis that lost
// its data, would otherwise miss every entity without a new event. Run
// before the partitions are consumed, by their owner.
func (in *Ingester) seedRedis(ctx context.Context, parts map[*viewRoute][]int32) error {
	m, err := onlineredis.LoadMarkers(ctx, in.cfg.Redis, in.cfg.TopicPrefix)
	if err != nil {
		return err
	}
	for v, ps := range parts {
		unseeded, err := m.Unseeded(ctx, online.TableOf(v.engine.View()), ps)
		if err != nil {
			return err
		}
		for _, p := range slices.Sorted(maps.Keys(unseeded)) {
			if err := in.seedPartition(ctx, m, v, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// seedPartition writes a changelog partition's states to Redis, the whole
// changelog in order, between the two writes of its marker.
func (in *Ingester) seedPartition(ctx context.Context, m *onlineredis.Markers, v *viewRoute, partition int32) error {
	began := time.Now()
	view := v.engine.View()
	table := online.TableOf(view)
	if err := m.Begin(ctx, table, partition, in.parts); err != nil {
		return err
	}
	var records int64
	end, err := in.readChangelog(ctx, v.changelog, partition, 0, func(recs []*kgo.Record) error {
		pipe := in.cfg.Redis.Pipeline()
		for _, r := range recs {
			if r.Value == nil {
				pipe.Del(ctx, v.redisKey+string(r.Key))
			} else {
				pipe.Set(ctx, v.redisKey+string(r.Key), r.Value, view.TTL)
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
	in.log.Info("redis seeded from changelog", "topic", v.changelog, "partition", partition, "records", records,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}
