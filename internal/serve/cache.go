package serve

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
)

// stateCache keeps recently read states decoded, and their latest
// evaluation. Decoding a state rebuilds its running totals (tens of
// microseconds for a busy entity), evaluating it takes a few: a hot entity
// is decoded once per change, not once per lookup, and evaluated once per
// span of its engine (until a window moves to its next tile). States are
// shared between requests: Evaluate only reads them.
//
// The cache never serves a stale state. Over a store that tells of every
// change (online.Watched: the Pebble replica), an entry is used without
// reading the store, until the store says its record changed. Over any
// other store (Redis), the record is read and an entry is used only if it
// is byte for byte the record the entry was decoded from, or newer than
// the record read (see keepNewer).
type stateCache struct {
	lru     *lru.Cache[cacheKey, *cachedState] // nil: no cache
	watched bool
	now     func() time.Time
	seed    maphash.Seed
	// stripes order the changes the store tells of with the entries read
	// meanwhile: a state read before a change of its record is not added
	// once the change is told (see add).
	stripes [64]stripe
}

type stripe struct {
	mu      sync.Mutex
	changes atomic.Uint64 // changes told of the stripe's keys; written under mu
}

type cacheKey struct {
	table online.Table
	key   string
}

type cachedState struct {
	record  []byte          // what state was decoded from; nil when watched
	applied map[int32]int64 // the record's applied offsets; nil when watched
	read    time.Time       // when the record was read; zero when watched
	state   *features.State
	eval    atomic.Pointer[evaluation] // the latest; nil before the first
}

// evaluation is a state's feature values at the times [from, until).
type evaluation struct {
	from, until int64
	values      []features.Value
}

// evaluate writes the state's features as of t into out, as
// Engine.Evaluate, reusing the latest evaluation when t is in its span.
func (c *cachedState) evaluate(eng *features.Engine, t int64, out []features.Value) error {
	if e := c.eval.Load(); e != nil && e.from <= t && t < e.until {
		copy(out, e.values)
		return nil
	}
	if err := eng.Evaluate(c.state, t, out); err != nil {
		return err
	}
	from, until := eng.Span(t)
	c.eval.Store(&evaluation{from: from, until: until, values: slices.Clone(out)})
	return nil
}

// keepNewer is how long after its record was read an entry is answered in
// place of an older record read from a store that is not watched. Reads
// from Redis may go back in time: go-redis's client-side cache, which
// one-key reads go through, can return a record for up to
// redis.MaxStaleness after a pipelined read returned a newer one. Past
// this, an older record is a reset (a view's states rebuilt), and it
// replaces the entry.
const keepNewer = 2 * redis.MaxStaleness

// newStateCache returns a cache of entries states (none if entries <= 0)
// read from store; now is the clock of keepNewer.
func newStateCache(entries int, store online.Store, now func() time.Time) (*stateCache, error) {
	c := &stateCache{seed: maphash.MakeSeed(), now: now}
	if entries <= 0 {
		return c, nil
	}
	var err error
	if c.lru, err = lru.New[cacheKey, *cachedState](entries); err != nil {
		return nil, err
	}
	if w, ok := store.(online.Watched); ok {
		w.Watch(c.changed, c.dropped)
		c.watched = true
	}
	return c, nil
}

// read sets states[i] to the state of keys[i] in table t, or nil when the
// store has none, and counts the states found decoded in the cache (hits)
// and those decoded (misses).
func (c *stateCache) read(ctx context.Context, store online.Store, eng *features.Engine, t online.Table, keys []string, states []*cachedState) (hits, misses int, err error) {
	read, at := keys, []int(nil) // the keys read from the store, and their places in keys
	var changes []uint64         // when watched, their stripes' changes before the read
	if c.watched {
		read = nil
		for i, k := range keys {
			if e, ok := c.lru.Get(cacheKey{t, k}); ok {
				states[i] = e
				hits++
				continue
			}
			read, at = append(read, k), append(at, i)
			changes = append(changes, c.stripe(cacheKey{t, k}).changes.Load())
		}
		if len(read) == 0 {
			return hits, 0, nil
		}
	}
	err = store.Get(ctx, t, read, func(j int, rec []byte) error {
		if len(rec) == 0 {
			return nil // no state
		}
		i, k := j, cacheKey{t, read[j]}
		if at != nil {
			i = at[j]
		}
		if !c.watched && c.lru != nil {
			if e, ok := c.lru.Get(k); ok && (bytes.Equal(e.record, rec) || c.newer(e, rec)) {
				states[i] = e
				hits++
				return nil
			}
		}
		decoded, applied, err := online.DecodeState(eng, rec)
		if err != nil {
			return fmt.Errorf("state of %q: %w", k.key, err)
		}
		st := &cachedState{state: decoded}
		states[i] = st
		misses++
		switch {
		case c.watched:
			c.add(k, st, changes[j])
		case c.lru != nil:
			st.record, st.applied, st.read = bytes.Clone(rec), applied, c.now()
			c.lru.Add(k, st)
		}
		return nil
	})
	return hits, misses, err
}

// newer reports whether e, read less than keepNewer ago, holds a newer
// state than rec: a state's applied offsets only grow, so e's cover rec's
// and differ.
func (c *stateCache) newer(e *cachedState, rec []byte) bool {
	if c.now().Sub(e.read) >= keepNewer {
		return false
	}
	applied, _, err := online.SplitRecord(rec)
	if err != nil || maps.Equal(applied, e.applied) {
		return false
	}
	for p, o := range applied {
		if eo, ok := e.applied[p]; !ok || eo < o {
			return false
		}
	}
	return true
}

func (c *stateCache) stripe(k cacheKey) *stripe {
	return &c.stripes[maphash.Comparable(c.seed, k)%uint64(len(c.stripes))]
}

// add caches the state of k read when its stripe had seen changes changes,
// unless the store has told of a change since: it may have been read
// before that change, and changed, the next to remove it, may have run
// already.
func (c *stateCache) add(k cacheKey, st *cachedState, changes uint64) {
	s := c.stripe(k)
	s.mu.Lock()
	if s.changes.Load() == changes {
		c.lru.Add(k, st)
	}
	s.mu.Unlock()
}

// changed is told by the store after a record changed.
func (c *stateCache) changed(t online.Table, key string) {
	k := cacheKey{t, key}
	s := c.stripe(k)
	s.mu.Lock()
	s.changes.Add(1)
	c.lru.Remove(k)
	s.mu.Unlock()
}

// dropped is told by the store after all of a table's records were
// removed.
func (c *stateCache) dropped(t online.Table) {
	for i := range c.stripes {
		c.stripes[i].mu.Lock()
		c.stripes[i].changes.Add(1)
	}
	for _, k := range c.lru.Keys() {
		if k.table == t {
			c.lru.Remove(k)
		}
	}
	for i := range c.stripes {
		c.stripes[i].mu.Unlock()
	}
}
