package replay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// Publish writes each entity's state record to the version's changelog,
// keyed by entity as ingest keys it, and with rdb also to Redis with the
// view's TTL, and returns once everything is acknowledged. The changelog
// must exist (EnsureChangelog). Entities not in ents keep their records: a
// catch-up publishes only the entities it changed.
func Publish(ctx context.Context, cl *kgo.Client, prefix string, defs *features.Definitions, v *features.View, ents map[string]*Entity, rdb redis.UniversalClient) error {
	return publish(ctx, cl, prefix, defs, v, ents, nil, rdb)
}

// Replace is Publish for a replay that recomputed the version: a bucket's
// entities become its only states. Every other entity of the bucket that
// the changelog holds (read with kafka, as ScanChangelog) gets a tombstone, and with rdb its Redis key is
// deleted, so that a state an earlier replay or ingest published, for an
// entity this replay has no event for (none since Config.Since, or its
// events gone from the log), is not served or caught up from. The changelog
// lists every entity: ingest writes an entity's Redis key only after its
// record.
func Replace(ctx context.Context, cl *kgo.Client, kafka []kgo.Opt, prefix string, defs *features.Definitions, v *features.View, b *Bucket, rdb redis.UniversalClient) error {
	stale := map[string]bool{}
	err := ScanChangelog(ctx, kafka, online.ChangelogTopic(prefix, online.TableOf(v)), func(key, value []byte) {
		if k := string(key); b.Has(k) && b.Entities[k] == nil {
			stale[k] = value != nil
		}
	})
	if err != nil {
		return err
	}
	var keys []string
	for k, live := range stale {
		if live {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return publish(ctx, cl, prefix, defs, v, b.Entities, keys, rdb)
}

// publish writes the records of ents, and removes those of the stale keys.
func publish(ctx context.Context, cl *kgo.Client, prefix string, defs *features.Definitions, v *features.View, ents map[string]*Entity, stale []string, rdb redis.UniversalClient) error {
	eng, err := features.NewEngine(defs, v)
	if err != nil {
		return err
	}
	table := online.TableOf(v)
	topic := online.ChangelogTopic(prefix, table)
	keys := append(slices.Sorted(maps.Keys(ents)), stale...)
	const chunk = 10_000
	for len(keys) > 0 {
		n := min(chunk, len(keys))
		recs := make([]*kgo.Record, n)
		var pipe redis.Pipeliner
		if rdb != nil {
			pipe = rdb.Pipeline()
		}
		for i, k := range keys[:n] {
			var value []byte // stale: a tombstone
			if e := ents[k]; e != nil {
				value = online.EncodeState(eng, e.State, e.Applied)
			}
			recs[i] = &kgo.Record{Topic: topic, Key: []byte(k), Value: value}
			switch {
			case pipe == nil:
			case value == nil:
				pipe.Del(ctx, online.RedisKey(prefix, table, k))
			default:
				pipe.Set(ctx, online.RedisKey(prefix, table, k), value, v.TTL)
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("publish %s: %w", v.Ref(), err)
		}
		if pipe != nil {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("publish %s to redis: %w", v.Ref(), err)
			}
		}
		keys = keys[n:]
	}
	return nil
}

// Partitions returns how many partitions ingest gives every topic it keys
// by entity (repartition topics and changelogs): as many as the largest
// source topic a view of defs reads, so that an entity's events and its
// state record share a partition number. Ingest creates its topics by it,
// and EnsureChangelog a changelog ingest has not created yet, so that the
// two agree. missing lists the source topics views read that do not exist
// yet: until they do, the count is unknown.
func Partitions(ctx context.Context, adm *kadm.Client, defs *features.Definitions) (parts int32, missing []string, err error) {
	var sources []string
	for _, v := range defs.Views {
		sources = append(sources, defs.Source(v.Source).Topic)
	}
	sources = slices.Compact(slices.Sorted(slices.Values(sources)))
	details, err := adm.ListTopics(ctx, sources...)
	if err != nil {
		return 0, nil, fmt.Errorf("list source topics: %w", err)
	}
	for _, t := range sources {
		if d, ok := details[t]; ok && d.Err == nil {
			parts = max(parts, int32(len(d.Partitions)))
		} else {
			missing = append(missing, t)
		}
	}
	return parts, missing, nil
}

// ErrComputedLive is CheckNotLive's error for a version ingest computes.
var ErrComputedLive = errors.New("ingest computes this version")

// CheckNotLive returns an error matching ErrComputedLive when ingest has
// taken the version over: no replay marker exists, and its changelog does,
// or its feature log has rows (the offline store tells so whatever the
// topic prefix: a mistyped one finds no changelog). A replay then would
// publish states behind ingest's, without the events ingest applied after
// the replay's marks, until ingest next restarts, and would rewrite the
// feature log ingest writes. A version with a marker (pending, or of a
// replay ingest has not taken over yet), or with neither, may be replayed.
func CheckNotLive(ctx context.Context, adm *kadm.Client, off *offline.Dir, prefix string, v *features.View) error {
	if _, ok, err := ReadMarker(ctx, off, v); err != nil || ok {
		return err
	}
	files, err := off.LogFiles(ctx, offline.FeatureLogDir(v))
	if err != nil {
		return err
	}
	if len(files) > 0 {
		return fmt.Errorf("%s: %w (its feature log %s has rows, with no replay marker): a replay would publish states behind ingest's and rewrite its feature log; define a new version and replay that",
			v.Ref(), ErrComputedLive, offline.FeatureLogDir(v))
	}
	topic := online.ChangelogTopic(prefix, online.TableOf(v))
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return fmt.Errorf("%s: %w (its changelog %s exists, with no replay marker): a replay would publish states behind ingest's; define a new version and replay that", v.Ref(), ErrComputedLive, topic)
	}
	return nil
}

// endOffsetsWait bounds how long a changelog's end offsets may stay
// unknown: a broker may not know a topic just created, or a partition's
// leader, for a moment.
const endOffsetsWait = 30 * time.Second

// endOffsets lists a changelog's end offsets, every partition's, asking
// again while an error is retriable, up to endOffsetsWait. A partition
// left out would leave its states out of a scan: a catch-up would then
// compute them anew, over their history.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(endOffsetsWait)
	for {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("changelog %s end offsets: %w", topic, err)
			}
			return ends, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EnsureChangelog creates a version's changelog if it does not exist, as
// ingest would: compacted, with Partitions partitions, so that an entity
// lands in the partition ingest reads it from; one that exists with another
// count is refused, as ingest refuses it. It fails while a source topic a
// view reads is missing, where ingest would wait for it.
func EnsureChangelog(ctx context.Context, adm *kadm.Client, prefix string, defs *features.Definitions, v *features.View) error {
	topic := online.ChangelogTopic(prefix, online.TableOf(v))
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	parts, missing, err := Partitions(ctx, adm, defs)
	if err != nil {
		return err
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		if len(missing) == 0 && int32(len(d.Partitions)) != parts {
			return fmt.Errorf("changelog %s has %d partitions, want %d like the largest source topic a view reads (ingest refuses it too): delete it or change the sources", topic, len(d.Partitions), parts)
		}
		return AllowLargeRecords(ctx, adm, topic)
	}
	if len(missing) > 0 {
		return fmt.Errorf("changelog %s: source topics %v, which views read, do not exist yet: create them first, as it takes as many partitions as the largest source topic a view reads", topic, missing)
	}
	resp, err := adm.CreateTopic(ctx, parts, -1, TopicConfigs(true), topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	return nil
}

// maxMessageBytes is online.MaxRecordBytes as a topic config value.
var maxMessageBytes = strconv.Itoa(online.MaxRecordBytes)

// TopicConfigs returns the configs of a topic Quiver creates: records of up
// to online.MaxRecordBytes, and compaction for a changelog.
func TopicConfigs(changelog bool) map[string]*string {
	c := map[string]*string{"max.message.bytes": &maxMessageBytes}
	if changelog {
		compact := "compact"
		c["cleanup.policy"] = &compact
	}
	return c
}

// AllowLargeRecords raises the max.message.bytes of the topics that take
// less than online.MaxRecordBytes: topics created before it was set.
func AllowLargeRecords(ctx context.Context, adm *kadm.Client, topics ...string) error {
	described, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	var low []string
	for _, rc := range described {
		if rc.Err != nil {
			return fmt.Errorf("describe topic configs of %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if n, err := strconv.Atoi(c.MaybeValue()); c.Key == "max.message.bytes" && err == nil && n < online.MaxRecordBytes {
				low = append(low, rc.Name)
			}
		}
	}
	if len(low) == 0 {
		return nil
	}
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &maxMessageBytes}}, low...)
	if err == nil {
		for _, r := range resp {
			if r.Err != nil {
				err = fmt.Errorf("%s: %w %s", r.Name, r.Err, r.ErrMessage)
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("raise max.message.bytes of %v to %s, for state records that large: %w", low, maxMessageBytes, err)
	}
	return nil
}

// ScanChangelog reads a changelog from its start to its current end, with
// clients of the options kafka (seed brokers, TLS, SASL), and calls fn with each record's key and value (nil: a tombstone), each
// partition's in order: an entity's last call has its latest record.
func ScanChangelog(ctx context.Context, kafka []kgo.Opt, topic string, fn func(key, value []byte)) error {
	adm, err := kgo.NewClient(kafka...)
	if err != nil {
		return err
	}
	defer adm.Close()
	ends, err := endOffsets(ctx, kadm.NewClient(adm), topic)
	if err != nil {
		return err
	}
	want := map[int32]int64{}
	start := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clip(kafka), kgo.ConsumePartitions(start))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; !ok || r.Offset >= end {
				return // past the end as it was
			}
			fn(r.Key, r.Value)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}
