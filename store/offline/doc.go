// Package offline is Quiver's offline store: the event log, feature logs and
// registry records that training sets and replays are built from.
//
// Dir is the store, on a local disk (NewDir) or under a key prefix of an S3
// bucket (NewS3Dir; --offline s3://bucket/prefix), with the same layout and
// rules on both: a small internal interface (bucket: list, open for random
// reads, stage then place, remove) is all that differs.
//
// Files appear atomically. On a local disk each is written to a temporary
// name beside its final one, synced, then linked (CreateFile, which must not
// replace) or renamed into place, and the directory synced. In a bucket each
// is built in memory and written with one PUT, which S3 makes visible whole
// or not at all, so no temporary object ever exists; CreateFile's PUT
// carries If-None-Match: *, which AWS S3, MinIO and versitygw honour (a
// server that ignores it lets a create overwrite; see NewS3Dir). A bucket
// has no directory times, so the index below lists a log's date prefixes
// on every refresh there; footers are still read once per file per Dir.
// Compaction's grace period runs from the server's Last-Modified time.
//
// The tests run every log, high-water mark and compaction test against both:
// a temporary directory, and a bucket of versitygw (posix backend, an
// S3-compatible server written in Go) that internal/s3test starts on a free
// port. make test-deps builds it with go install into bin/tools/.
//
// # Logs
//
// The event log and the feature logs are Parquet files (zstd), laid out by
// UTC date of their event time:
//
//	events/<source>/date=YYYY-MM-DD/<ksuid>.parquet
//	features/<view>/v<version>/date=YYYY-MM-DD/<ksuid>.parquet
//
// An event log file holds the source's schema fields, typed as declared and
// nullable, then _event_time (TIMESTAMP(MILLIS, UTC)), _topic (string),
// _partition (INT32) and _offset (INT64), which are required. A feature log
// file holds the join keys, _event_time and one column per feature. Types
// map as string → BYTE_ARRAY (STRING), int → INT64, float → DOUBLE, bool →
// BOOLEAN, timestamp → INT64 TIMESTAMP(MILLIS, UTC); DuckDB, Spark and
// pyarrow read them as such, _event_time as a timestamp with time zone.
// Columns are in the order given, not sorted by name.
//
// Dir.WriteBatch writes a Batch (rows from one input stream, say a Kafka
// topic partition, covering a range of its offsets) as one file per date it
// touches. Each file's key/value metadata records the batch: quiver.stream,
// quiver.first_offset, quiver.last_offset and quiver.batch_dates (every date
// the batch wrote). The file name is a KSUID built from the batch's earliest
// event time and a hash of (stream, offsets, date): names sort by time, and
// writing the same batch again replaces its files instead of adding rows.
// Temporary files (.tmp-*) are ignored by every reader in this package;
// Dir.Compact removes those a writer killed mid-write left in a date
// partition once they are older than its grace period and an hour.
// LogFiles lists a log's files by name in the store; ReadLogFile reads one
// as rows, EachLogGroup column by column, a row group at a time.
//
// # High-water marks
//
// Dir.HighWaterMark(dir, stream) is the highest last offset of any complete
// batch of stream in a log, in any date. After a restart or a partition
// assignment, ingest skips input at or below it, so a replay never leaves
// duplicate rows even when it cuts batches differently. A batch spanning
// dates counts once all its files are in place; the files of an incomplete
// batch above the mark (a crash between two renames) are removed then, since
// their rows will be written again. Marks never go down: removing a complete
// batch's files does not lower it within a process. Only footers are read,
// once per file per Dir.
//
// A compactor that merges log files must keep every stream's mark, for
// instance by leaving the files of each stream's newest batch in place: files
// without quiver.stream do not count, and a file without quiver.batch_dates
// counts as a complete batch.
package offline
