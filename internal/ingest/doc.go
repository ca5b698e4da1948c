// Package ingest turns Kafka events into feature state: the engine of package
// features applied to every view of every source, effectively once.
//
// # Flow
//
// Stage one consumes the source topics. Each record is decoded by its
// source's schema; a record that does not decode, or whose event time is
// older than its partition's watermark (the latest event time seen there)
// minus the source's allowed lateness, or (with Config.MaxFutureSkew) too far
// ahead of its record's timestamp (or of the clock, when that is ahead of it
// too), or that holds a null join key for
// every entity its source's views aggregate, goes to <prefix>.dlq with
// headers for the reason, the error and its origin, then the producer's
// own (but for quiver-* ones, from an earlier dead-lettering). Accepted events go to
// the offline event log and are re-keyed, for each entity a view of the
// source aggregates, to <prefix>.repartition.<entity>, keyed by the
// entity's join keys, so that each entity has exactly one owner; an entity
// whose key the event lacks does not get it, and its views count it as
// refused (quiver_ingest_events_refused_total, reason missing_entity_key)
// and warn of it. Re-keyed events carry the
// decoded event (features.Source.AppendEvent), not the JSON, so that each
// event is parsed once.
//
// Stage two consumes the repartition topics. Each event is applied to its
// entity's state in each view; the new states go to the compacted
// <prefix>.changelog.<view>.v<version> (keyed by entity, partitioned like the
// repartition topic), to the local Pebble state store, optionally to Redis
// (key <prefix>:<view>:v<version>:<entity>, expiring after the view's TTL),
// and each applied event's feature values to the offline feature log.
//
// # Expiry
//
// Every Config.ExpireInterval, ingest looks through the states of the
// changelog partitions it owns for those whose latest event is older than
// their view's TTL, which serve answers OUTSIDE_MAX_AGE, without values,
// and deletes them between two batches: a tombstone in the changelog
// (serve's replicas and the state store drop the state) and a delete in
// Redis. An event for the entity afterwards starts its state anew, as
// Redis's own expiry of the key does.
//
// # Redis
//
// Ingest writes a state to Redis when it applies an event, so Redis lacks
// the states of entities without an event since ingest moved to Redis, or
// since Redis lost data. Where a changelog partition's seeded marker
// (package store/online/redis) is missing or older than Redis's run, its
// owner writes every state of the partition from the changelog: when the
// partition is assigned, and, checked every second while ingest runs, when
// Redis lost it (FLUSHALL, a restart, a failover). The latter waits for
// the batch in flight and holds the next until done, so Redis ends with
// each entity's latest state. Serve's store is ready only while every
// partition is seeded.
//
// # Effectively once
//
// Kafka delivers at least once; three mechanisms make replays exact:
//
//   - A state record holds, per source partition, the offset of the latest
//     event it applied. A replayed event at or below it is skipped, however
//     the replay came about: a crash, a rebalance, a stage-one replay that
//     re-keyed an event twice.
//   - A source partition's watermark is committed with its offset, as the
//     commit's metadata, so a replay decides lateness exactly as the first
//     run did, on whichever instance it runs.
//   - Offline files are named by the offsets they cover and written
//     atomically before the offsets are committed; after a restart, input at
//     or below a stream's offline high-water mark is not logged again.
//
// # New view versions
//
// A view version ingest has not computed before (its changelog does not
// exist yet) is replayed from the offline event log before the group is
// joined, and so is one that backfill replay bootstrapped, from the offsets
// its marker records (package replay). Add a version by restarting every
// instance of the group with the new definitions.
//
// A batch is what one poll returns, at most Config.MaxBatch records; a
// fetch waits for a megabyte of records or Config.FlushInterval, so that
// events that trickle in share a batch rather than each making files of
// their own. A batch is made durable in this order: offline files, then the changelog
// and the DLQ, then the state store, then the offsets. The state store is
// never ahead of the changelog, and on assignment a partition's state is
// caught up from the changelog before its first batch, so an instance that
// takes over a partition, or restarts after a crash, continues from exactly
// the state the changelog holds. The DLQ alone is at least once: a replay
// may dead-letter a record again. A batch whose re-keyed or dead-lettered
// records were not all acknowledged, or that failed to become durable, is
// never followed by a commit: ingest stops, and its restart replays it. An
// event too large to re-key (over about 900 kB) is dead-lettered as
// record_too_large, and a dead-lettered record that large goes to the DLQ
// without its key and value, its headers naming where it is.
package ingest
