package regularfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/regularfile"
)

// TestRead: a regular file within the limit is read, through a symbolic
// link too; a larger one, a FIFO (without blocking) and a device are
// refused, naming the path.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "model.json")
	if err := os.WriteFile(file, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		if b, err := regularfile.Read(p, 10); err != nil || string(b) != "0123456789" {
			t.Errorf("Read(%s, 10) = %q, %v", p, b, err)
		}
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{file, "10 bytes, over the limit of 9"},
		{fifo, "not a regular file"},
		{"/dev/zero", "not a regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		done := make(chan error, 1)
		go func() { _, err := regularfile.Read(c.path, 9); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("Read(%s, 9): %v, want an error naming it: %s", c.path, err, c.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Read(%s) blocked", c.path)
		}
	}
}
