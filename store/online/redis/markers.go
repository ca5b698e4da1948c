package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/store/online"
)

// Ingest writes an entity's state to Redis when it applies one of the
// entity's events, so Redis holds every state of a changelog partition only
// once ingest has written them all (seeded the partition), and only until
// Redis loses data: a restart without persistence, or from a snapshot
// older than the last writes, a failover to a replica that missed some,
// FLUSHALL. A seeded marker (online.RedisSeededKey) says which partitions
// Redis holds, and since when: its value (Marker) records the run ID of the
// Redis it was written to, which a restart or a failover changes.
//
// On a Redis Cluster a marker lives in one slot, so one master, and another
// master losing its data would not take it along: each marker has a copy on
// every master, the marker's key with a hash tag (":{n}") that puts it in
// one of the master's slots, and records the run IDs of all of them.

// Marker is the value of a seeded marker, as JSON.
type Marker struct {
	// Partitions is the partition count of the table's changelog.
	Partitions int32 `json:"partitions"`
	// Done is false while the partition is being seeded.
	Done bool `json:"done"`
	// Records is how many changelog records the seed wrote, the changelog
	// from its start to EndOffset (exclusive).
	Records   int64 `json:"records"`
	EndOffset int64 `json:"end_offset"`
	// RunIDs are the run IDs of the Redis, or of every master of a
	// cluster, sorted, as they were before the seed began.
	RunIDs []string  `json:"run_ids"`
	At     time.Time `json:"at"` // when the marker was written
}

// ErrNotSeeded is the error of a changelog partition whose states Redis may
// not hold: ingest has not written them all since this Redis began, or
// Redis lost some since.
var ErrNotSeeded = errors.New("redis: not seeded")

// Markers reads and writes the seeded markers of a Redis as it was when
// LoadMarkers looked at it: a marker written since a restart or a failover
// is not one of its own, and one it writes then is not the new Redis's.
type Markers struct {
	client redis.UniversalClient
	prefix string
	runIDs []string
	tags   []string // of the copies, one per master of a cluster; nil for one Redis
}

// LoadMarkers looks at Redis now: its run ID, or on a Redis Cluster (a
// *redis.ClusterClient; Redis 7 or later) each master's and a hash tag in
// each master's slots. prefix is the topic prefix of ingest's keys
// ("quiver" if empty).
func LoadMarkers(ctx context.Context, client redis.UniversalClient, prefix string) (*Markers, error) {
	if prefix == "" {
		prefix = "quiver"
	}
	m := &Markers{client: client, prefix: prefix}
	c, ok := client.(*redis.ClusterClient)
	if !ok {
		info, err := client.Info(ctx, "server").Result()
		if err != nil {
			return nil, failed(server(client), "INFO server", err)
		}
		m.runIDs = []string{runID(info)}
		return m, nil
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, failed("redis cluster at "+strings.Join(c.Options().Addrs, ","), "CLUSTER SHARDS (Redis 7 or later)", err)
	}
	if m.tags, err = masterTags(shards); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		info, err := node.Info(ctx, "server").Result()
		if err != nil {
			return failed("redis cluster master "+node.Options().Addr, "INFO server", err)
		}
		mu.Lock()
		m.runIDs = append(m.runIDs, runID(info))
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(m.runIDs)
	return m, nil
}

// server names the Redis of a client that is not a cluster's: a
// *redis.Client, as redis.NewUniversalClient makes, of one Redis or of
// the master Sentinels name (whose Options().Addr is go-redis's
// "FailoverClient").
func server(c redis.UniversalClient) string {
	rc, ok := c.(*redis.Client)
	switch {
	case !ok:
		return fmt.Sprintf("redis (%T)", c)
	case rc.Options().Addr == "FailoverClient":
		return "the redis master the sentinels name"
	}
	return "redis at " + rc.Options().Addr
}

// failed says that a command to a Redis failed: that it did not answer,
// when it timed out or could not be reached, else what it answered.
func failed(server, command string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) {
		return fmt.Errorf("%s did not answer %s: %w", server, command, err)
	}
	return fmt.Errorf("%s: %s: %w", server, command, err)
}

// runID returns the run_id field of INFO server's answer, empty if there is
// none (a Redis-compatible server without it: restarts go unnoticed).
func runID(info string) string {
	_, rest, ok := strings.Cut(info, "run_id:")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "\r\n")
	return strings.TrimSpace(id)
}

// keys returns the keys of a partition's marker: one, or a copy per master.
func (m *Markers) keys(t online.Table, partition int32) []string {
	key := online.RedisSeededKey(m.prefix, t, partition)
	if m.tags == nil {
		return []string{key}
	}
	keys := make([]string, len(m.tags))
	for i, tag := range m.tags {
		keys[i] = key + ":{" + tag + "}"
	}
	return keys
}

// Unseeded returns the partitions of a table, of those given, whose states
// Redis may not hold, each with why (ErrNotSeeded): its marker, or a copy,
// is missing (never seeded, or lost), says the seed has not finished, or is
// older than a restart or failover of Redis.
func (m *Markers) Unseeded(ctx context.Context, t online.Table, partitions []int32) (map[int32]error, error) {
	markers, err := m.read(ctx, t, partitions)
	if err != nil {
		return nil, err
	}
	out := map[int32]error{}
	for i, p := range partitions {
		if err := m.seeded(markers[i]); err != nil {
			out[p] = fmt.Errorf("%w: %s partition %d: %w", ErrNotSeeded, t, p, err)
		}
	}
	return out, nil
}

// read returns the copies of each partition's marker, nil where missing.
func (m *Markers) read(ctx context.Context, t online.Table, partitions []int32) ([][]*Marker, error) {
	cmds := make([][]*redis.StringCmd, len(partitions))
	pipe := m.client.Pipeline() // a pipeline bypasses a client-side cache
	for i, p := range partitions {
		for _, k := range m.keys(t, p) {
			cmds[i] = append(cmds[i], pipe.Get(ctx, k))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read %s seeded markers: %w", t, err)
	}
	out := make([][]*Marker, len(partitions))
	for i, copies := range cmds {
		for _, c := range copies {
			v, err := c.Bytes()
			if errors.Is(err, redis.Nil) {
				out[i] = append(out[i], nil)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read %s seeded marker: %w", t, err)
			}
			mk := new(Marker)
			if json.Unmarshal(v, mk) != nil {
				mk = &Marker{} // an older version's (a time): not done
			}
			out[i] = append(out[i], mk)
		}
	}
	return out, nil
}

// seeded says why a partition with these copies of its marker is not
// seeded, or nil.
func (m *Markers) seeded(copies []*Marker) error {
	if !slices.ContainsFunc(copies, func(mk *Marker) bool { return mk != nil }) {
		return errors.New("no marker: Redis lost its data, or ingest never wrote the partition's states")
	}
	for i, mk := range copies {
		switch {
		case mk == nil:
			return fmt.Errorf("no marker on the master of slot tag {%s}: that master lost its data, or the slots moved", m.tags[i])
		case !mk.Done:
			return errors.New("the seed has not finished (or an older ingest wrote the marker)")
		case !slices.Equal(mk.RunIDs, m.runIDs):
			return fmt.Errorf("seeded in Redis run %v, now %v: Redis restarted or failed over since", mk.RunIDs, m.runIDs)
		}
	}
	return nil
}

// Begin writes a partition's marker before its states are written: until
// Done replaces it, the partition is not seeded.
func (m *Markers) Begin(ctx context.Context, t online.Table, partition, partitions int32) error {
	return m.write(ctx, t, partition, Marker{Partitions: partitions}, false)
}

// Done writes a partition's marker once all its states are written: mk
// with Done set, the run IDs Redis had when LoadMarkers looked and the
// time. It replaces only the copies Begin wrote that are still there:
// should Redis have lost some meanwhile, the partition stays unseeded.
func (m *Markers) Done(ctx context.Context, t online.Table, partition int32, mk Marker) error {
	mk.Done = true
	return m.write(ctx, t, partition, mk, true)
}

func (m *Markers) write(ctx context.Context, t online.Table, partition int32, mk Marker, replace bool) error {
	mk.RunIDs, mk.At = m.runIDs, time.Now().UTC()
	v, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	args := redis.SetArgs{}
	if replace {
		args.Mode = "XX"
	}
	pipe := m.client.Pipeline()
	for _, k := range m.keys(t, partition) {
		pipe.SetArgs(ctx, k, v, args)
	}
	cmds, _ := pipe.Exec(ctx) // each command's error is its own
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) { // Nil: XX found no copy
			return fmt.Errorf("write %s seeded marker of partition %d: %w", t, partition, err)
		}
	}
	return nil
}

// TableSeeded returns nil if Redis holds every state of a table: every
// partition of its changelog (as many as partition 0's marker says) is
// seeded. Otherwise its error says which partition is not (ErrNotSeeded).
func (m *Markers) TableSeeded(ctx context.Context, t online.Table) error {
	first, err := m.read(ctx, t, []int32{0})
	if err != nil {
		return err
	}
	if err := m.seeded(first[0]); err != nil {
		return fmt.Errorf("%w: %s partition 0: %w", ErrNotSeeded, t, err)
	}
	rest := make([]int32, 0, first[0][0].Partitions)
	for p := int32(1); p < first[0][0].Partitions; p++ {
		rest = append(rest, p)
	}
	unseeded, err := m.Unseeded(ctx, t, rest)
	if err != nil {
		return err
	}
	for _, p := range rest {
		if err := unseeded[p]; err != nil {
			return err
		}
	}
	return nil
}

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// masterTags returns, for each shard of a cluster that serves slots (one
// master and its replicas), the smallest decimal number whose hash slot is
// one of the shard's: a hash tag that puts a key on its master.
func masterTags(shards []redis.ClusterShard) ([]string, error) {
	var owner [slots]int // shard index + 1; 0: none
	n := 0
	for _, sh := range shards {
		if len(sh.Slots) == 0 {
			continue
		}
		n++
		for _, r := range sh.Slots {
			for s := max(r.Start, 0); s <= min(r.End, slots-1); s++ {
				owner[s] = n
			}
		}
	}
	if n == 0 {
		return nil, errors.New("redis cluster: no slots served")
	}
	// In the order found, so by number: the same shards give the same list.
	var tags []string
	tagged := make([]bool, n)
	for i := 0; len(tags) < n && i < 1<<20; i++ {
		tag := strconv.Itoa(i)
		if o := owner[hashSlot(tag)] - 1; o >= 0 && !tagged[o] {
			tagged[o] = true
			tags = append(tags, tag)
		}
	}
	if len(tags) < n {
		return nil, errors.New("redis cluster: no hash tag found for every shard")
	}
	return tags, nil
}

// hashSlot is the hash slot of a key without a hash tag, or of a hash
// tag's content: CRC16 (XMODEM) modulo the slot count, as Redis Cluster
// computes it.
func hashSlot(key string) int {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % slots
}
