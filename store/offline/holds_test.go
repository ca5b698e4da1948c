package offline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/quiver-ml/quiver/store/offline"
)

func TestHolds(t *testing.T) {
	root := t.TempDir()
	off, err := offline.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "events", "transactions"), 0o755); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "events", "transactions"), filepath.Join(elsewhere, "link")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		filepath.Join(root, "events", "transactions", "date=2026-01-01", "x.parquet"): true,
		filepath.Join(root, "events", "x.parquet"):                                    true,
		filepath.Join(root, "features", "v", "v1", "x.parquet"):                       true,
		filepath.Join(elsewhere, "link", "x.parquet"):                                 true, // a link into the log
		filepath.Join(root, "events.parquet"):                                         false,
		filepath.Join(root, "eventsx", "x.parquet"):                                   false,
		filepath.Join(root, "datasets", "x.parquet"):                                  false,
		filepath.Join(elsewhere, "x.parquet"):                                         false,
	} {
		if got := off.Holds(path); got != want {
			t.Errorf("Holds(%s) = %v, want %v", path, got, want)
		}
	}
}
