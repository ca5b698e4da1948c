package serve

import (
	"bytes"
	"slices"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// stateCache keeps recently read states decoded, and their latest
// evaluation. Decoding a state rebuilds its running totals (tens of
// microseconds for a busy entity), evaluating it takes a few: a hot entity
// is decoded once per change, not once per lookup, and evaluated once per
// span of its engine (until a window moves to its next tile). An entry is
// used only if the record read from the store is byte for byte the one it
// was decoded from, so the cache never serves a stale state. States are
// shared between requests: Evaluate only reads them.
type stateCache struct {
	lru *lru.Cache[cacheKey, *cachedState] // nil: no cache
}

type cacheKey struct {
	table online.Table
	key   string
}

type cachedState struct {
	record []byte
	state  *features.State
	eval   atomic.Pointer[evaluation] // the latest; nil before the first
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

func newStateCache(entries int) (*stateCache, error) {
	if entries <= 0 {
		return &stateCache{}, nil
	}
	c, err := lru.New[cacheKey, *cachedState](entries)
	if err != nil {
		return nil, err
	}
	return &stateCache{lru: c}, nil
}

// decode returns the state a record holds, from the cache when it has this
// very record. hit reports whether it did. The cache keeps a copy of the
// record, not the record.
func (c *stateCache) decode(eng *features.Engine, t online.Table, key string, record []byte) (st *cachedState, hit bool, err error) {
	k := cacheKey{t, key}
	if c.lru != nil {
		if e, ok := c.lru.Get(k); ok && bytes.Equal(e.record, record) {
			return e, true, nil
		}
	}
	decoded, _, err := online.DecodeState(eng, record)
	if err != nil {
		return nil, false, err
	}
	st = &cachedState{state: decoded}
	if c.lru != nil {
		st.record = bytes.Clone(record)
		c.lru.Add(k, st)
	}
	return st, false, nil
}
