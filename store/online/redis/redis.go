package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/store/online"
)

// MaxStaleness is how long a record cached on the client (CacheOptions) may
// be served at most without Redis confirming it, should an invalidation be
// lost: the backstop, far below serve's one-second freshness target.
// Invalidations normally arrive within milliseconds of a write.
const MaxStaleness = 500 * time.Millisecond

// CacheOptions turns on client-side caching for a single Redis (Redis
// Cluster clients ignore it): records read are kept on the client, up to
// maxBytes, and Redis tells the client (RESP3 tracking) when a key it holds
// changes, so hot entities cost no round trip and are never staler than an
// invalidation's flight, or MaxStaleness at worst. Only one-key reads go
// through the cache (a pipeline bypasses it), so a one-key read may return
// an older record than a read of several keys just before: reads are not
// monotonic, and serve's state cache makes them so. It needs Redis 6 or
// later.
func CacheOptions(opts *redis.UniversalOptions, maxBytes int64) {
	opts.Protocol = 3
	opts.ClientSideCacheConfig = &redis.ClientSideCacheConfig{MaxMemoryBytes: maxBytes, MaxStaleness: MaxStaleness}
}

// Store reads state records from Redis.
type Store struct {
	client redis.UniversalClient
	prefix string
	tables []online.Table
}

var _ online.Store = (*Store)(nil)

// New returns a store reading the keys ingest writes with the given topic
// prefix ("quiver" if empty), ready once Redis holds every state of the
// tables. The store closes client on Close.
func New(client redis.UniversalClient, prefix string, tables []online.Table) *Store {
	if prefix == "" {
		prefix = "quiver"
	}
	return &Store{client: client, prefix: prefix, tables: tables}
}

// Get implements online.Store with one pipelined round trip: MGET cannot
// span the slots of a cluster, a pipeline of GETs can.
func (s *Store) Get(ctx context.Context, t online.Table, keys []string, fn func(int, []byte) error) error {
	if len(keys) == 1 {
		v, err := s.client.Get(ctx, online.RedisKey(s.prefix, t, keys[0])).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return readError(t, err)
		}
		return fn(0, v)
	}
	cmds := make([]*redis.StringCmd, len(keys))
	pipe := s.client.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, online.RedisKey(s.prefix, t, k))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return readError(t, err)
	}
	for i, c := range cmds {
		v, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return readError(t, err)
		}
		if err := fn(i, v); err != nil {
			return err
		}
	}
	return nil
}

func readError(t online.Table, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return online.ErrClosed
	}
	var reply redis.Error
	if !errors.As(err, &reply) || redis.IsLoadingError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) {
		// Not an answer (no connection, a timeout), or one that says to
		// come back later.
		return fmt.Errorf("read %s from redis: %w: %w", t, online.ErrUnavailable, err)
	}
	return fmt.Errorf("read %s from redis: %w", t, err)
}

// Ready implements online.Store: Redis holds every state of every table,
// as the seeded markers ingest writes say (Markers.TableSeeded). It is
// asked again at each call: a Redis that lost data is not ready until
// ingest has written its states again.
func (s *Store) Ready(ctx context.Context) error {
	m, err := LoadMarkers(ctx, s.client, s.prefix)
	if err != nil {
		return err
	}
	for _, t := range s.tables {
		if err := m.TableSeeded(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the client.
func (s *Store) Close() error { return s.client.Close() }
