package ingest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// expireChunk is the most states one flush of expire deletes, so that a
// sweep that finds many holds in.mu, between two batches, only briefly.
const expireChunk = 10_000

// expire deletes the states of the changelog partitions this instance owns
// whose latest event is older than their view's TTL, the expiry a view's
// ttl promises: serve already answers them OUTSIDE_MAX_AGE, without values,
// and without this the state of every entity ever seen would stay in the
// changelog, the state store and every serve replica for good. Each goes as
// a tombstone in the changelog, so that replicas drop it too, and is
// deleted from Redis, where a key lives the TTL from when ingest wrote it,
// not from its latest event (a replay of old events writes states that
// expired long ago).
//
// It reads the state store without in.mu and checks each state it finds
// again under it, where batches cannot change it, flushing the deletions
// like a batch. Flushes run under work, Run's context for flushes.
func (in *Ingester) expire(ctx, work context.Context) error {
	in.mu.Lock()
	owned := in.ownedChangelogs()
	in.mu.Unlock()
	for v := range owned {
		ttl := v.engine.View().TTL.Milliseconds()
		if ttl <= 0 {
			continue
		}
		partitioner := kgo.StickyKeyPartitioner(nil).ForTopic(v.changelog) // the producer's hash of a key
		var found []expiredState
		corrupt, err := in.store.expired(ctx, v.changelog, v.engine, time.Now().UnixMilli(), ttl, func(entity string) error {
			p := int32(partitioner.Partition(&kgo.Record{Key: []byte(entity)}, int(in.parts)))
			if !slices.Contains(owned[v], p) {
				return nil // another instance's, kept from when this one owned it
			}
			if found = append(found, expiredState{entity, p}); len(found) == expireChunk {
				err := in.expireStates(work, v, found)
				found = found[:0]
				return err
			}
			return nil
		})
		if err == nil && len(found) > 0 {
			err = in.expireStates(work, v, found)
		}
		if err != nil {
			return err
		}
		if corrupt != nil {
			return corrupt
		}
	}
	return nil
}

// expired calls fn with each entity of a changelog whose state in the
// store has its latest event more than ttl before now (Unix milliseconds),
// until fn or ctx fails. A state it cannot read is skipped, for the
// entity's next event to report; the first is returned as corrupt.
func (s *store) expired(ctx context.Context, changelog string, eng *features.Engine, now, ttl int64, fn func(entity string) error) (corrupt, err error) {
	err = s.states(changelog, func(entity string, record []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, state, err := online.SplitRecord(record)
		last, ok := int64(0), false
		if err == nil {
			last, ok, err = eng.LastEventTimeOf(state)
		}
		if err != nil {
			corrupt = cmp.Or(corrupt, fmt.Errorf("state of %s in %s: %w", entity, changelog, err))
			return nil
		}
		if !ok || now-last <= ttl {
			return nil
		}
		return fn(entity)
	})
	return corrupt, err
}

type expiredState struct {
	entity    string
	partition int32
}

// expireStates deletes the states found expired that still are, and that
// this instance still owns, under in.mu: each becomes an empty state in the
// cache, which the snapshot of the flush it starts writes as a tombstone,
// and from which an event that comes next starts again.
func (in *Ingester) expireStates(work context.Context, v *viewRoute, found []expiredState) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.fatal != nil || in.stopped {
		return nil
	}
	owned := in.ownedChangelogs()[v]
	ttl, now := v.engine.View().TTL.Milliseconds(), time.Now().UnixMilli()
	n := 0
	for _, e := range found {
		if !slices.Contains(owned, e.partition) {
			continue // revoked meanwhile
		}
		sh := shard{v.changelog, e.partition}
		if in.cache[sh] == nil {
			in.cache[sh] = map[string]*cached{}
		}
		c, err := in.state(v, e.partition, []byte(e.entity))
		if err != nil {
			return err
		}
		if last, ok := c.state.LastEventTime(); !ok || now-last <= ttl {
			continue // deleted already, or an event came since
		}
		in.cache[sh][e.entity] = &cached{rec: stateRecord{applied: map[int32]int64{}}, state: v.engine.NewState(), dirty: true}
		n++
	}
	if n == 0 {
		return nil
	}
	if err := in.waitFlush(); err != nil {
		in.fail(err) // Run returns it
		return nil
	}
	in.startFlush(work, in.snapshot(newBatch(in.client, &produceErr{})))
	v.expired.Add(float64(n))
	if in.cacheSize() > maxCached { // trim only what is durable
		if err := in.waitFlush(); err != nil {
			in.fail(err)
		}
		clear(in.cache)
	}
	return nil
}
