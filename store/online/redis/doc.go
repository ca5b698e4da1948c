// Package redis is the online store of serve replicas that share one copy of
// every view's state: the Redis or Redis Cluster ingest writes to, one string
// key per entity (online.RedisKey) holding its state record and expiring
// after the view's TTL. A lookup of many entities is one pipelined round trip
// (per cluster node).
package redis
