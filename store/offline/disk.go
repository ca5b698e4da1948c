package offline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// disk is a bucket in a local directory. A file is written to a temporary
// name beside its final one (.tmp-*, which readers skip), synced, then
// linked (exclusive) or renamed into place, and the directory synced.
type disk struct {
	root string
}

var (
	_ bucket      = (*disk)(nil)
	_ tempRemover = (*disk)(nil)
)

func (d *disk) path(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

func (d *disk) open(_ context.Context, name string) (file, int64, error) {
	f, err := os.Open(d.path(name))
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func (d *disk) stat(_ context.Context, name string) (entry, error) {
	st, err := os.Stat(d.path(name))
	if err != nil {
		return entry{}, err
	}
	return entry{name: st.Name(), dir: st.IsDir(), size: st.Size(), mod: st.ModTime()}, nil
}

func (d *disk) dirTime(_ context.Context, dir string) (time.Time, error) {
	st, err := os.Stat(d.path(dir))
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

func (d *disk) list(_ context.Context, dir string) ([]entry, error) {
	des, err := os.ReadDir(d.path(dir))
	if err != nil {
		return nil, err
	}
	entries := make([]entry, 0, len(des))
	for _, e := range des {
		switch {
		case e.IsDir():
			entries = append(entries, entry{name: e.Name(), dir: true})
		case e.Type().IsRegular():
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since it was listed
			}
			if err != nil {
				return nil, err
			}
			entries = append(entries, entry{name: e.Name(), size: info.Size(), mod: info.ModTime()})
		}
	}
	return entries, nil
}

func (d *disk) stage(_ context.Context, dir string, write func(io.Writer) error) (staged, error) {
	if err := d.mkdirAll(dir); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(d.path(dir), tempPattern)
	if err != nil {
		return nil, err
	}
	s := &diskStaged{dir: filepath.Dir(f.Name()), tmp: f.Name()}
	bw := bufio.NewWriterSize(f, 256<<10)
	// CreateTemp makes the file private; logs are read by other tools.
	err = f.Chmod(0o644)
	if err == nil {
		err = write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		s.n, err = f.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

func (d *disk) removeTemps(_ context.Context, dir string, cutoff time.Time) (int, error) {
	des, err := os.ReadDir(d.path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range des {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // placed or discarded since it was listed
		}
		if err != nil {
			return removed, err
		}
		if !info.ModTime().Before(cutoff) {
			continue
		}
		err = os.Remove(filepath.Join(d.path(dir), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, err
		}
		removed++
	}
	// Unlike a log file's, a temporary file's removal need not be durable:
	// one that comes back after a crash is removed next time.
	return removed, nil
}

// mkdirAll creates the slash-separated directory name and any missing parents
// in the store, syncing each parent that gains an entry.
func (d *disk) mkdirAll(name string) error {
	p := d.root
	for el := range strings.SplitSeq(name, "/") {
		parent := p
		p = filepath.Join(p, el)
		err := os.Mkdir(p, 0o755)
		if err == nil {
			if err := syncDir(parent); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

type diskStaged struct {
	dir, tmp string // tmp is "" once placed
	n        int64
}

func (s *diskStaged) size() int64 { return s.n }

func (s *diskStaged) place(_ context.Context, name string, exclusive bool) error {
	if s.tmp == "" {
		return errors.New("place a staged file twice")
	}
	p := filepath.Join(s.dir, name)
	if exclusive {
		// A hard link, unlike a rename, refuses to replace an existing file.
		if err := os.Link(s.tmp, p); err != nil {
			return err
		}
		s.discard()
	} else {
		if err := os.Rename(s.tmp, p); err != nil {
			return err
		}
		s.tmp = ""
	}
	return syncDir(s.dir)
}

func (s *diskStaged) discard() {
	if s.tmp != "" {
		os.Remove(s.tmp)
		s.tmp = ""
	}
}

func (d *disk) remove(_ context.Context, dir string, names ...string) error {
	removed := false
	for _, name := range names {
		err := os.Remove(filepath.Join(d.path(dir), name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		removed = true
	}
	if !removed {
		return nil
	}
	return syncDir(d.path(dir))
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
