package offline

import (
	"context"
	"io"
	"time"
)

// LockLog takes a log's compaction lock as Compact does, for a test to hold
// it: keep checks and renews it as a compaction does before each change,
// and release gives it up.
func (d *Dir) LockLog(ctx context.Context, dir string) (keep func(context.Context) error, release func(), err error) {
	l, err := d.Lock(ctx, dir, compactLock, compactLockTTL)
	if err != nil {
		return nil, nil, err
	}
	return l.Keep, l.Release, nil
}

// OpenFile opens a file for reads at any offset, as the log readers do.
func (d *Dir) OpenFile(ctx context.Context, name string) (interface {
	io.ReaderAt
	io.Closer
}, error) {
	f, _, err := d.b.open(ctx, name)
	return f, err
}

// SetMergeGroupRows sets the rows of a compacted file's row groups, until
// the returned function restores them.
func SetMergeGroupRows(n int) (restore func()) {
	old := mergeGroupRows
	mergeGroupRows = n
	return func() { mergeGroupRows = old }
}

// SetReadWhole sets the size up to which a log file is read whole when
// opened, until the returned function restores it.
func SetReadWhole(n int64) (restore func()) {
	old := readWhole
	readWhole = n
	return func() { readWhole = old }
}

// SetS3Timeouts sets how long an S3 connection may move no byte and how
// many times a request is tried, for the stores opened until the returned
// function restores them.
func SetS3Timeouts(stall time.Duration, retries int) (restore func()) {
	old := s3Timeouts
	s3Timeouts.stall, s3Timeouts.retries = stall, retries
	return func() { s3Timeouts = old }
}
