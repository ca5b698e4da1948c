// Package features defines features and computes them: the one aggregation
// engine that ingest, serve and backfill share, so that what a model sees in
// training is what it sees in production.
//
// # Definitions
//
// Load reads a YAML file or a directory of them (entities, sources, feature
// views, feature services; see DESIGN §3) and validates them strictly:
// unknown keys, wrong types, dangling references, bad windows and duplicate
// names are all reported at once, as Errors naming file, line, column and
// field. Filters and on-demand features are CEL expressions. Filters are
// type-checked at load time against the source schema; an on-demand
// expression, whose request context is only known at request time, is
// refused at load time when it fails on its features' types whatever the
// request holds, and a request it fails on the types of is refused
// (OnDemandError).
//
// # Versions
//
// A view version's semantic content (entity, source, the fields it reads,
// filter, features) has a canonical form and a fingerprint
// (View.Canonical, View.Fingerprint). A Registry records each version's
// fingerprint durably, and refuses a definition that changed under a version
// that is already registered, saying what changed. Several versions of a view
// are separate views and are computed side by side.
//
// # Aggregation
//
// An Engine compiles one view version. Apply adds an event to an entity's
// State; Evaluate computes every feature as of a time. The semantics are
// DESIGN §4 exactly: with window W and granularity G (default W/60), an event
// at te is in the window at t iff te ≤ t and floor(te/G) ≥ floor(t/G) − W/G + 1.
//
//   - count counts events that pass the filter; sum, avg, min, max and stddev
//     (population) take the non-null values of a field; count_distinct
//     counts distinct non-null values, exactly up to 128 per tile and with a
//     HyperLogLog++ sketch (0.81% standard error) beyond; last is the field of
//     the latest event, ordered by (event time, partition, offset).
//   - Sums are exact and rounded once, and stddev is the square root of the
//     correctly rounded variance, so results do not depend on the order
//     events arrive in: a replay or a backfill gives the same bits as ingest.
//   - Evaluate needs t no earlier than the latest applied event: state keeps
//     tiles, not events, and cannot tell the events of t's tile apart.
//
// States encode compactly (AppendState, DecodeState) with a format version
// byte, so states written today stay readable after upgrades, and with a
// fingerprint prefix, so a state is never read by another definition.
//
// On-demand features (Service.OnDemand) are evaluated by EvalOnDemand from
// the fetched features and the request context, the same way wherever they
// are used.
package features
