package offline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// ErrLocked is the error of a compaction of a log another compaction holds.
var ErrLocked = errors.New("another compaction holds the log")

// A compaction lock keeps a log to one compactor at a time: two that planned
// their merges from different listings would each write a file replacing
// some of the same files, and readers would see those rows twice.
//
// The lock is a file in the log directory, _compacting.<generation>, placed
// exclusively, so it works wherever a bucket does, an object store
// included. Its holder renews it before each change it makes to the log; one
// not renewed for lockTTL is a dead compactor's, and the next compactor
// takes the next generation, which only one can place. A holder that stalled
// that long finds a newer generation at its next renewal and stops before
// changing anything more.
const (
	lockPrefix = "_compacting."
	lockTTL    = 10 * time.Minute
	// lockRenew is how old a lock gets before its holder rewrites it.
	lockRenew = time.Minute
)

// lease is a held compaction lock.
type lease struct {
	d       *Dir
	dir     string
	gen     uint64
	renewed time.Time
}

// lockState returns the newest generation of a log's lock and its entry (a
// zero generation when there is none), and the names of every generation.
func (d *Dir) lockState(ctx context.Context, dir string) (uint64, entry, []string, error) {
	entries, err := d.b.list(ctx, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, entry{}, nil, err
	}
	var top uint64
	var newest entry
	var names []string
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.name, lockPrefix)
		if e.dir || !ok {
			continue
		}
		gen, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			continue
		}
		names = append(names, e.name)
		if gen > top {
			top, newest = gen, e
		}
	}
	if top > 0 && newest.mod.IsZero() { // a listing without times
		if newest, err = d.b.stat(ctx, path.Join(dir, newest.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, entry{}, nil, err
		}
	}
	return top, newest, names, nil
}

// lock takes a log's compaction lock, or fails with ErrLocked.
func (d *Dir) lock(ctx context.Context, dir string) (*lease, error) {
	top, e, names, err := d.lockState(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if top > 0 && time.Since(e.mod) < lockTTL {
		return nil, fmt.Errorf("%s: %w (%s, written %s ago by %s; taken over once %v pass without renewal)",
			dir, ErrLocked, e.name, time.Since(e.mod).Round(time.Second), d.lockHolder(ctx, dir, e.name), lockTTL)
	}
	l := &lease{d: d, dir: dir, gen: top + 1}
	if err := l.write(ctx, true); errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s: %w (another compaction took it first)", dir, ErrLocked)
	} else if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// A dead compactor's lock goes.
	if err := d.b.remove(ctx, dir, names...); err != nil {
		l.release()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return l, nil
}

// lockHolder is what a lock file says of its holder, for errors.
func (d *Dir) lockHolder(ctx context.Context, dir, name string) string {
	f, size, err := d.b.open(ctx, path.Join(dir, name))
	if err != nil {
		return "a process gone since"
	}
	defer f.Close()
	b := make([]byte, min(size, 256))
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return "an unreadable holder"
	}
	return strings.TrimSpace(string(b))
}

func (l *lease) name() string { return lockPrefix + strconv.FormatUint(l.gen, 10) }

// write places the lock file, exclusively when taking it.
func (l *lease) write(ctx context.Context, exclusive bool) error {
	host, _ := os.Hostname()
	now := time.Now()
	st, err := l.d.b.stage(ctx, l.dir, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "host %s, pid %d, at %s\n", host, os.Getpid(), now.UTC().Format(time.RFC3339))
		return err
	})
	if err != nil {
		return err
	}
	defer st.discard()
	if err := st.place(ctx, l.name(), exclusive); err != nil {
		return err
	}
	l.renewed = now
	return nil
}

// keep checks that the lease still holds the lock, and renews it when it is
// due: called before each change to the log.
func (l *lease) keep(ctx context.Context) error {
	top, _, _, err := l.d.lockState(ctx, l.dir)
	if err != nil {
		return fmt.Errorf("lock %s: %w", l.dir, err)
	}
	if top != l.gen || time.Since(l.renewed) >= lockTTL {
		return fmt.Errorf("%s: %w: this compaction went %v without renewing its lock, and another took it over",
			l.dir, ErrLocked, time.Since(l.renewed).Round(time.Second))
	}
	if time.Since(l.renewed) < lockRenew {
		return nil
	}
	if err := l.write(ctx, false); err != nil {
		return fmt.Errorf("renew lock %s: %w", l.dir, err)
	}
	return nil
}

// release removes the lock file, even when the compaction was cancelled.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A lock left behind is taken over after lockTTL.
	_ = l.d.b.remove(ctx, l.dir, l.name())
}
