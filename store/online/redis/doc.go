// Package redis is the online store of serve replicas that share one copy of
// every view's state: the Redis or Redis Cluster ingest writes to, one string
// key per entity (online.RedisKey) holding its state record and expiring
// after the view's TTL. A lookup of many entities is one pipelined round trip
// (per cluster node).
//
// Redis is not the durable copy (the changelog topics are), so it may lack
// states it should hold: those of entities without an event since ingest
// moved to Redis, or since Redis lost data. Ingest writes a changelog
// partition's states all at once (seeds it) where its seeded marker is
// missing (Markers), and the store is ready only while every partition of
// every table is seeded.
package redis
