// Package e2e tests Quiver's binaries end to end, as users run them: built
// from source, started as processes, fed by kcat (a real third-party Kafka
// client) through the local broker, stopped with signals.
package e2e
