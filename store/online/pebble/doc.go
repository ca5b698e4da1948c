// Package pebble is the online store of a serve replica that keeps its own
// copy of every view's state: a local Pebble database fed from the compacted
// changelog topics ingest writes.
//
// A new replica reads each changelog from its start; a restarted one resumes
// from the offsets it had applied, which are written atomically with the
// records, unless it was down longer than a changelog keeps tombstones
// (delete.retention.ms): then compaction may have removed deletes it never
// applied, and it reads that changelog again from its start. Ready reports
// nil once the replica has caught up with the end of every changelog as it
// was when the replica started.
package pebble
