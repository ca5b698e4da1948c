package offline

import "context"

// LockLog takes a log's compaction lock as Compact does, for a test to hold
// it: keep checks and renews it as a compaction does before each change,
// and release gives it up.
func (d *Dir) LockLog(ctx context.Context, dir string) (keep func(context.Context) error, release func(), err error) {
	l, err := d.lock(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	return l.keep, l.release, nil
}
