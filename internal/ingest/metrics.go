package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiver-ml/quiver/features"
)

type metrics struct {
	consumed    *prometheus.CounterVec // by stage
	applied     *prometheus.CounterVec // by view
	refused     *prometheus.CounterVec // by view and reason
	dlq         *prometheus.CounterVec // by reason
	stateWrites *prometheus.CounterVec // by view
	expired     *prometheus.CounterVec // by view
	lag         *prometheus.GaugeVec   // by topic and partition
	offset      *prometheus.GaugeVec   // by topic and partition
	partitions  *prometheus.GaugeVec   // by topic
	batch       prometheus.Histogram   // seconds to make a batch durable
	redisSeeds  *prometheus.CounterVec // by view and reason
	skipped     *prometheus.CounterVec // repartitioned records, by reason
}

// Why a repartitioned record was skipped (quiver_ingest_repartition_skipped_total).
const (
	skipForeign     = "unknown_source"
	skipNoOrigin    = "no_origin"
	skipUndecodable = "undecodable"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_records_consumed_total", Help: "Records consumed, by stage: source or repartition.",
		}, []string{"stage"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_events_applied_total", Help: "Events applied to feature state, by view version.",
		}, []string{"view"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_events_refused_total", Help: "Valid events a view could not apply, by view version and reason: missing_entity_key, its entity's join key was null (another entity's views took the event); apply_error, its filter failed (a null field, say) or a summed number was out of range.",
		}, []string{"view", "reason"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_dlq_records_total", Help: "Records sent to the dead-letter queue, by reason.",
		}, []string{"reason"}),
		stateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_state_writes_total", Help: "Entity states written to the changelog and the state store, by view version.",
		}, []string{"view"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_states_expired_total", Help: "Entity states deleted because their latest event was older than the view's TTL (a tombstone in the changelog, deleted from Redis), by view version.",
		}, []string{"view"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "quiver_ingest_consumer_lag_records", Help: "Records between the committed offset and the partition's end, of the partitions this instance owns; updated by every fetch and every 5 s.",
		}, []string{"topic", "partition"}),
		offset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "quiver_ingest_consumer_committed_offset", Help: "The offset committed last, of the partitions this instance owns: records before it are durable everywhere. A partition whose lag is positive and whose offset does not move is stalled.",
		}, []string{"topic", "partition"}),
		partitions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "quiver_ingest_topic_partitions", Help: "Partitions of each topic ingest consumes, as of its start. The instances of a group report the lag of as many partitions of the topic between them: fewer is partitions no instance owns, whose lag nobody reports.",
		}, []string{"topic"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "quiver_ingest_batch_flush_duration_seconds", Help: "Time to make a batch durable: offline files, produce, state store, commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // to 33 s
		}),
		redisSeeds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_redis_seeds_total", Help: "Changelog partitions whose every state was written to Redis because Redis lacked them, by view version and reason: assigned (unseeded when assigned: ingest moved to Redis, or Redis lost data while no instance owned the partition) or lost (Redis lost data while this instance owned it: FLUSHALL, a restart, a failover).",
		}, []string{"view", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_ingest_repartition_skipped_total", Help: "Repartitioned records no view applied, by reason: unknown_source, of a source these definitions do not read (another deployment sharing --topic-prefix, or a source taken out of the definitions); no_origin, without the origin headers ingest writes; undecodable, a value that does not decode.",
		}, []string{"reason"}),
	}
	// At zero from the start, so that increase() sees the first.
	for _, r := range []string{features.ReasonInvalidJSON, features.ReasonSchema, features.ReasonMissingEventTime, features.ReasonLate,
		ReasonMissingKey, ReasonFuture, ReasonTooLarge} {
		m.dlq.WithLabelValues(r)
	}
	for _, s := range []string{"source", "repartition"} {
		m.consumed.WithLabelValues(s)
	}
	for _, r := range []string{skipForeign, skipNoOrigin, skipUndecodable} {
		m.skipped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.applied, m.refused, m.dlq, m.stateWrites, m.expired, m.lag, m.offset, m.partitions, m.batch, m.redisSeeds, m.skipped)
	}
	return m
}
