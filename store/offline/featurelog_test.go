package offline_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/store/offline"
)

func TestRemoveLog(t *testing.T) { eachBackend(t, testRemoveLog) }

// testRemoveLog: RemoveLog removes every file of a log, compacted ones
// included, and its streams' marks, in this process and in another; beside
// a compaction it fails with ErrLocked and changes nothing.
func testRemoveLog(t *testing.T, d *fixture) {
	ctx := context.Background()
	const dir = "events/transactions"
	if n, err := d.RemoveLog(ctx, dir); n != 0 || err != nil {
		t.Fatalf("removing a log with no files: %d, %v", n, err)
	}
	writeEvents(t, d.Dir, 2, 6)
	if _, err := d.Compact(ctx, dir, offline.CompactOptions{TargetBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	var parquet int
	for _, f := range d.files(t, dir) {
		if strings.HasSuffix(f, ".parquet") {
			parquet++
		}
	}
	before := d.files(t, dir)

	_, release, err := d.reopen(t).LockLog(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.RemoveLog(ctx, dir); !errors.Is(err, offline.ErrLocked) {
		t.Fatalf("removing a log beside a compaction: %v, want ErrLocked", err)
	}
	release()
	if after := d.files(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a refused removal changed the log: %v, was %v", after, before)
	}

	n, err := d.RemoveLog(ctx, dir)
	if err != nil || n != parquet {
		t.Fatalf("removed %d files, %v; want the %d there", n, err, parquet)
	}
	for _, f := range d.files(t, dir) {
		t.Errorf("%s left", f)
	}
	for name, dd := range map[string]*offline.Dir{"this process": d.Dir, "another": d.reopen(t)} {
		if files, err := dd.LogFiles(ctx, dir); len(files) != 0 || err != nil {
			t.Errorf("%s lists %v, %v", name, files, err)
		}
		if marks, err := dd.Marks(ctx, dir); len(marks) != 0 || err != nil {
			t.Errorf("%s has marks %v, %v", name, marks, err)
		}
		if _, ok, err := dd.HighWaterMark(ctx, dir, "transactions/0"); ok || err != nil {
			t.Errorf("%s has a high-water mark: %v", name, err)
		}
	}
	// The log is written again from scratch.
	writeEvents(t, d.Dir, 1, 1)
	if got, _ := readLog(t, d.Dir); len(got) != 10 {
		t.Errorf("%d rows after writing 10 again", len(got))
	}
	if hwm, ok, err := d.HighWaterMark(ctx, dir, "transactions/0"); hwm != 9 || !ok || err != nil {
		t.Errorf("high-water mark %d, %v, %v; want 9", hwm, ok, err)
	}
}
