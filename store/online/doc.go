// Package online is the read side of the online store: the state records
// ingest writes for each entity of each view version, looked up by serve.
//
// Store is the interface serve reads through. Two backends implement it:
// package pebble keeps a local replica fed from the changelog topics, so that
// every serve replica answers from its own disk; package redis reads the
// Redis or Redis Cluster that ingest writes to, so that replicas share one
// copy. Both pass the suite in package storetest.
//
// The names both sides agree on live here too: changelog topics
// (ChangelogTopic), entity keys (AppendEntityKey) and Redis keys (RedisKey).
package online
