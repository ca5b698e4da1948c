// Command generate produces the fraud demo's card transactions (package
// fraudgen) to a Kafka topic, keyed by user_id, one JSON object per record,
// with the record timestamp set to the event time. With --stdout it writes
// JSON lines to standard output instead, for piping into other tools.
//
// Pacing:
//
//   - --rate N > 0 produces N events per second of wall-clock time, and the
//     event time of each event is the wall-clock time it is produced at, so
//     that online features are fresh. The generator's own clock runs at the
//     same rate, starting now, so bursts and --drift-at line up with it.
//   - --rate 0 (the default) produces as fast as it can, with event time
//     starting at --start (default now) and advancing --event-rate events per
//     second: a way to make days of history in seconds for backfills.
//
// Drift: with --drift-at, a share of users change behaviour from that event
// time on (package fraudgen, Drift); SIGUSR1 switches the drift on while it
// runs, from the current event time.
//
// Scoring: with --predict URL, each event is also posted to that predict
// endpoint of serve (entities user_id and merchant_id, request context
// amount), as a payment service would ask for a fraud score; a few requests
// run at a time and events that find them busy go unscored. The predictions
// serve logs are what ingest's drift detectors watch.
//
// It stops after --count events or --duration of wall-clock time, whichever
// comes first, or on SIGINT or SIGTERM; then it flushes what is buffered,
// logs how many events the broker acknowledged, and exits. It does not create
// the topic: the broker auto-creates it (cmd/localkafka does), or create it
// beforehand.
//
// Example, against cmd/localkafka:
//
//	go run ./examples/fraud/generate --rate 200
//	go run ./examples/fraud/generate --count 1000000 --start 2026-01-01T00:00:00Z --event-rate 20
//	go run ./examples/fraud/generate --stdout --count 5
//
// Every flag is also read from its environment variable: --brokers from
// QUIVER_BROKERS, --drift-at from QUIVER_DRIFT_AT; run with -h for the list.
package main
