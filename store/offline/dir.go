package offline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Dir is an offline store rooted at a local directory. It is safe for
// concurrent use.
type Dir struct {
	root string

	schemas sync.Map // Parquet schemas of log columns, by names and types

	mu   sync.Mutex
	logs map[string]*logIndex // by log directory
}

// NewDir returns the store rooted at root, creating the directory if needed.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("open offline store: %w", err)
	}
	return &Dir{root: root}, nil
}

// path maps a slash-separated name inside the store to a file path, refusing
// names that would leave the root.
func (d *Dir) path(name string) (string, error) {
	if !fs.ValidPath(name) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("offline: invalid file name %q", name)
	}
	return filepath.Join(d.root, filepath.FromSlash(name)), nil
}

// ReadFile returns a file's contents; the error matches fs.ErrNotExist when
// there is none.
func (d *Dir) ReadFile(_ context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// CreateFile writes a new file atomically and durably. It fails with an error
// matching fs.ErrExist if the file exists, also when another process creates
// it at the same moment.
func (d *Dir) CreateFile(_ context.Context, name string, data []byte) error {
	// A hard link, unlike a rename, refuses to replace an existing file.
	return d.putFile("create", name, data, os.Link)
}

// ReplaceFile writes a file atomically and durably, replacing any file of
// that name: a reader sees the old contents or the new, never a mix.
func (d *Dir) ReplaceFile(_ context.Context, name string, data []byte) error {
	return d.putFile("replace", name, data, os.Rename)
}

// putFile writes data to a synced temporary file beside name, then puts it
// in place with place (a link or a rename) and syncs the directory.
func (d *Dir) putFile(verb, name string, data []byte, place func(tmp, name string) error) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// RemoveFile removes a file durably; a file that is not there is no error.
func (d *Dir) RemoveFile(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return syncDir(filepath.Dir(p))
}
