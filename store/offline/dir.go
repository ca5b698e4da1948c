package offline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Dir is an offline store: a tree of files in a local directory (NewDir) or
// under a key prefix of an S3 bucket (NewS3Dir), with the same layout and
// atomicity on both. It is safe for concurrent use.
type Dir struct {
	b   bucket
	url string // where the store is, for messages: file:///path, s3://bucket/prefix

	schemas sync.Map // Parquet schemas of log columns, by names and types

	mu   sync.Mutex
	logs map[string]*logIndex // by log directory
}

// NewDir returns the store rooted at the local directory root, creating it
// if needed.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("open offline store: %w", err)
	}
	// Absolute, so that a message names the store whatever the working
	// directory was.
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	return &Dir{b: &disk{root: root}, url: "file://" + filepath.ToSlash(abs)}, nil
}

// String returns where the store is as an --offline URL: file:///path, or
// s3://bucket/prefix.
func (d *Dir) String() string { return d.url }

// checkName checks a slash-separated name inside the store, refusing names
// that would leave the root.
func checkName(name string) error {
	if !fs.ValidPath(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("offline: invalid file name %q", name)
	}
	return nil
}

// ReadFile returns a file's contents; the error matches fs.ErrNotExist when
// there is none.
func (d *Dir) ReadFile(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	data, err := d.readAll(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// readAll reads a whole file with one read (one request to an object store).
// A file replaced between the open and the read is opened again, so that the
// reader gets the old contents or the new; each try fails only if yet another
// replacement landed within it, and a try ends with the context.
func (d *Dir) readAll(ctx context.Context, name string) ([]byte, error) {
	for {
		data, err := d.readOnce(ctx, name)
		if !errors.Is(err, ErrReplaced) {
			return data, err
		}
	}
}

func (d *Dir) readOnce(ctx context.Context, name string) ([]byte, error) {
	f, size, err := d.b.open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if n, err := f.ReadAt(data, 0); n < len(data) {
		return nil, err
	}
	return data, nil
}

// CreateFile writes a new file atomically and durably. It fails with an error
// matching fs.ErrExist if the file exists, also when another process creates
// it at the same moment.
func (d *Dir) CreateFile(ctx context.Context, name string, data []byte) error {
	return d.putFile(ctx, "create", name, data, true)
}

// ReplaceFile writes a file atomically and durably, replacing any file of
// that name: a reader sees the old contents or the new, never a mix.
func (d *Dir) ReplaceFile(ctx context.Context, name string, data []byte) error {
	return d.putFile(ctx, "replace", name, data, false)
}

func (d *Dir) putFile(ctx context.Context, verb, name string, data []byte, exclusive bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	s, err := d.b.stage(ctx, path.Dir(name), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err == nil {
		defer s.discard()
		err = s.place(ctx, path.Base(name), exclusive)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return nil
}

// RemoveFile removes a file durably; a file that is not there is no error.
func (d *Dir) RemoveFile(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := d.b.remove(ctx, path.Dir(name), path.Base(name)); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// Holds reports whether the local file path lies in the trees the store
// keeps its logs in (events/ and features/ of a local store), where a file
// of anything else would be read as part of a log. Links are followed.
func (d *Dir) Holds(path string) bool {
	dk, ok := d.b.(*disk)
	if !ok {
		return false
	}
	root, err := resolve(dk.root)
	if err != nil {
		return false
	}
	p, err := resolve(path)
	if err != nil {
		return false
	}
	for _, tree := range []string{"events", "features"} {
		rel, err := filepath.Rel(filepath.Join(root, tree), p)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// resolve returns path absolute, its links followed as far as it exists.
func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(abs)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return "", err
		}
		rest = append([]string{filepath.Base(abs)}, rest...)
		abs = parent
	}
}
