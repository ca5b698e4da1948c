package offline_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/store/offline"
)

func TestDirCreateFile(t *testing.T) { eachBackend(t, testDirCreateFile) }

func testDirCreateFile(t *testing.T, d *fixture) {
	ctx := context.Background()
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
	if files := d.files(t, "_registry/v"); !slices.Equal(files, []string{"v1.json"}) {
		t.Fatalf("directory holds %v; want only v1.json, no temporary files", files)
	}
	if err := d.ReplaceFile(ctx, "_registry/v/v1.json", []byte("three")); err != nil {
		t.Fatal(err)
	}
	if got, err := d.ReadFile(ctx, "_registry/v/v1.json"); err != nil || string(got) != "three" {
		t.Fatalf("read back %q, %v; want \"three\"", got, err)
	}
	if err := d.RemoveFile(ctx, "_registry/v/v1.json"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveFile(ctx, "_registry/v/v1.json"); err != nil {
		t.Fatalf("remove a missing file: %v, want no error", err)
	}
	if _, err := d.ReadFile(ctx, "_registry/v/v1.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read a removed file: %v, want fs.ErrNotExist", err)
	}
	for _, bad := range []string{"../escape", "/abs", "a/../../b", ".hidden", ""} {
		if err := d.CreateFile(ctx, bad, nil); err == nil {
			t.Errorf("CreateFile(%q) succeeded; want an error", bad)
		}
	}
}

// TestDirCreateFileRace creates one file from many goroutines: exactly one
// wins and its contents are whole. On S3 that is the server's conditional
// write (If-None-Match: *).
func TestDirCreateFileRace(t *testing.T) { eachBackend(t, testDirCreateFileRace) }

func testDirCreateFileRace(t *testing.T, d *fixture) {
	ctx := context.Background()
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

// TestDirReadFileWhileReplaced reads a file while another goroutine keeps
// replacing it: every read gets one whole version of it. On S3 a replacement
// can land between the read's HEAD and its GET.
func TestDirReadFileWhileReplaced(t *testing.T) { eachBackend(t, testDirReadFileWhileReplaced) }

func testDirReadFileWhileReplaced(t *testing.T, d *fixture) {
	ctx := context.Background()
	if err := d.ReplaceFile(ctx, "x/f", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ; i++ {
			if err := d.ReplaceFile(wctx, "x/f", fmt.Appendf(nil, "v%d", i)); wctx.Err() != nil {
				return
			} else if err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer stop()
	version := regexp.MustCompile(`^v[0-9]+$`)
	for range 300 {
		got, err := d.ReadFile(ctx, "x/f")
		if err != nil {
			t.Fatalf("read a file being replaced: %v", err)
		}
		if !version.Match(got) {
			t.Fatalf("read %q; want one whole version", got)
		}
	}
}

// TestDirReadReplacedFile reads from a file opened before it was replaced:
// a disk reads the old contents; S3 cannot, and says the file was replaced.
func TestDirReadReplacedFile(t *testing.T) { eachBackend(t, testDirReadReplacedFile) }

func testDirReadReplacedFile(t *testing.T, d *fixture) {
	ctx := context.Background()
	if err := d.ReplaceFile(ctx, "x/f", []byte("old")); err != nil {
		t.Fatal(err)
	}
	f, err := d.OpenFile(ctx, "x/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.ReplaceFile(ctx, "x/f", []byte("new")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	_, err = f.ReadAt(got, 0)
	if d.root != "" {
		if err != nil || string(got) != "old" {
			t.Fatalf("read a replaced file on a disk: %q, %v; want the old contents", got, err)
		}
		return
	}
	if !errors.Is(err, offline.ErrReplaced) || errors.Is(err, fs.ErrExist) {
		t.Fatalf("read a replaced object: %v; want offline.ErrReplaced", err)
	}
}
