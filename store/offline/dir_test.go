package offline_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/store/offline"
)

func TestDirCreateFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := offline.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile(ctx, "_registry/v/v1.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := d.CreateFile(ctx, "_registry/v/v1.json", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateFile(ctx, "_registry/v/v1.json", []byte("two")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("create over an existing file: %v, want fs.ErrExist", err)
	}
	if got, err := d.ReadFile(ctx, "_registry/v/v1.json"); err != nil || string(got) != "one" {
		t.Fatalf("read back %q, %v; want \"one\"", got, err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "_registry", "v"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v (%v); want only v1.json, no temporary files", entries, err)
	}
	for _, bad := range []string{"../escape", "/abs", "a/../../b", ".hidden", ""} {
		if err := d.CreateFile(ctx, bad, nil); err == nil {
			t.Errorf("CreateFile(%q) succeeded; want an error", bad)
		}
	}
}

// TestDirCreateFileRace creates one file from many goroutines: exactly one
// wins and its contents are whole.
func TestDirCreateFileRace(t *testing.T) {
	ctx := context.Background()
	d, err := offline.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wins := make([]bool, 32)
	for i := range wins {
		wg.Go(func() {
			err := d.CreateFile(ctx, "x/f", []byte{byte(i)})
			if err != nil && !errors.Is(err, fs.ErrExist) {
				t.Error(err)
			}
			wins[i] = err == nil
		})
	}
	wg.Wait()
	got, err := d.ReadFile(ctx, "x/f")
	if err != nil || len(got) != 1 {
		t.Fatalf("read %v, %v", got, err)
	}
	n := 0
	for i, w := range wins {
		if w {
			n++
			if got[0] != byte(i) {
				t.Errorf("winner %d, contents %d", i, got[0])
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d creators won, want 1", n)
	}
}
