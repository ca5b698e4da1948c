// Package fraudgen generates a deterministic stream of card transactions for
// the fraud demo, matching the transactions source of
// examples/fraud/definitions.yaml:
//
//	{"txn_id":"tx_…","user_id":"u000042","merchant_id":"m00017","amount":23.5,"country":"DE","ts":"2026-01-01T00:00:00.010Z"}
//
// # Population
//
// New builds a population from Config.Seed: merchants, each in a country, and
// users, each with a home country, a handful (3 to 8) of regular merchants in
// that country, an activity level (log-normal, so a few users are much busier
// than most) and an amount scale (log-normal across users, median about 35).
// A user's amounts are log-normal around their own scale and rounded to cents.
// Most transactions happen at the user's regular merchants in their home
// country; a few at other home-country merchants, and a few (travel) in another
// country.
//
// # Suspicious bursts
//
// A small share of transactions (Config.BurstShare) start a suspicious burst:
// 8 to 25 transactions by one user within a few minutes (5 to 45 seconds
// apart), each at a random merchant the user does not use regularly, all in one
// country other than their home, for amounts about three times their usual.
// Burst transactions have Event.Suspicious set, the ground truth for a demo
// model; it is not part of the JSON.
//
// # Drift
//
// With Config.DriftAt set, a share of users (Config.DriftShare, chosen from the
// seed) change behaviour for events at or after DriftAt: their amounts are
// multiplied by Config.DriftFactor, and half of their transactions move to a
// second country of their own. Other users do not change. This is what the
// drift detectors are meant to notice: the amount features shift upwards, and
// the countries seen per user and per merchant spread.
//
// # Time
//
// Event time advances by exactly 1/Rate per event from Config.Start: event n
// falls in [Start + n/Rate, Start + (n+1)/Rate) (to the millisecond), jittered
// within that slot, so the stream is in order. With Config.OutOfOrder > 0 each event is moved back
// by up to that much more, so an event's time is never more than OutOfOrder
// before the latest time already generated. Times have whole milliseconds, in
// UTC, as in the JSON.
//
// # Determinism
//
// The same Config gives the same stream, event for event, in the same build:
// Next uses nothing but a random source seeded from Config.Seed. A Generator is
// not safe for concurrent use.
package fraudgen
