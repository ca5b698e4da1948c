// Package offline is Quiver's offline store: the event log, feature logs and
// registry records that training sets and replays are built from.
//
// Dir is the store on a local disk. Files appear atomically: each is written
// to a temporary name, synced, then linked or renamed into place.
package offline
