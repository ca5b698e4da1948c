//go:build unix

package backfill_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/quiver-ml/quiver/internal/backfill"
)

// TestSpillWithinOpenFileLimit: the spill files a run holds open at once
// stay within half the open-file limit, however many cores there are:
// fewer of them read the log when the buckets are many. A run whose
// buckets alone would pass it is refused, saying what to raise.
func TestSpillWithinOpenFileLimit(t *testing.T) {
	defs, off, dir, spine, _ := smallRun(t, 9)
	var refs []string
	for _, v := range defs.Views {
		refs = append(refs, v.Ref()+":"+v.Features[0].Name)
	}
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	low := was
	low.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16))

	run := func(limit int64) (backfill.Summary, error) {
		return backfill.Dataset(context.Background(), backfill.DatasetConfig{Definitions: defs, Offline: off, Spine: spine,
			TimestampColumn: "label_time", Features: refs, Out: filepath.Join(dir, "out.parquet"),
			MemoryLimit: limit, TempDir: t.TempDir()})
	}
	// A few hundred buckets: a spill file each per core would be thousands.
	sum, err := run(32 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Buckets*16 <= 1024 || sum.Buckets > 512 {
		t.Fatalf("%d buckets: want more than 1024 files on 16 cores, within 512 on one", sum.Buckets)
	}
	// 1,024 buckets: more than half the limit on one core.
	if _, err := run(1); err == nil || !strings.Contains(err.Error(), "raise it (ulimit -n) or --memory-limit") {
		t.Fatalf("got %v, want a refusal for the open-file limit", err)
	}
}
