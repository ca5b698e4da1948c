package serve

import (
	"bytes"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// stateCache keeps recently read states decoded. Decoding a state rebuilds
// its running totals (tens of microseconds for a busy entity), evaluating it
// takes about one: a hot entity is decoded once per change, not once per
// lookup. An entry is used only if the record read from the store is byte
// for byte the one it was decoded from, so the cache never serves a stale
// state. States are shared between requests: Evaluate only reads them.
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
// very record. hit reports whether it did.
func (c *stateCache) decode(eng *features.Engine, t online.Table, key string, record []byte) (st *features.State, hit bool, err error) {
	if c.lru == nil {
		st, _, err = online.DecodeState(eng, record)
		return st, false, err
	}
	k := cacheKey{t, key}
	if e, ok := c.lru.Get(k); ok && bytes.Equal(e.record, record) {
		return e.state, true, nil
	}
	st, _, err = online.DecodeState(eng, record)
	if err != nil {
		return nil, false, err
	}
	c.lru.Add(k, &cachedState{record: record, state: st})
	return st, false, nil
}
