// Package serve is serve's HTTP API: online feature lookups
// (POST /get-online-features, Feast-compatible), the definitions
// (GET /v1/feature-views), health, readiness and metrics.
//
// A lookup reads each entity's state record from an online.Store and
// evaluates its windows with the same engine ingest and backfill use, at
// as_of, the request's arrival (an entity whose latest event is later, from
// a producer's clock ahead of ours, is evaluated at that event). Entity
// columns come first in the
// response, then one result per feature, values in entity order, each with a
// status: PRESENT; NOT_FOUND when the entity has no state; OUTSIDE_MAX_AGE
// when its latest event is older than the view's TTL (the value is then
// null), until ingest deletes the expired state (then NOT_FOUND). A model is
// given an entity without state its empty windows' values instead, as
// training sets have them (features.Engine.Empty). Every
// client error is a 4xx with a JSON body {"error", "code"}. While the store
// is not ready (a replica catching up, a Redis ingest has not seeded), or
// cannot be read, a lookup is a 503 with Retry-After: the store would answer
// NOT_FOUND for entities it does not hold yet.
package serve
