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
	"sync"
	"time"
)

// ErrLocked is the error of taking a lock another process holds.
var ErrLocked = errors.New("locked by another process")

// A lock keeps what it guards in a directory to one process at a time.
// Compaction locks a log (compactLock): two compactors that planned their
// merges from different listings would each write a file replacing some of
// the same files, and readers would see those rows twice. Ingest locks its
// start (the replay markers' directory), so that two instances never catch
// the same view version up at once.
//
// A lock is a file in the directory, _<name>.<generation>, placed
// exclusively, so it works wherever a bucket does, an object store
// included. Its holder renews it (Keep, or Hold in the background); one not
// renewed for its time to live is a dead holder's, and the next process
// takes the next generation, which only one can place. A process on the
// holder's machine takes it at once when the holder is gone (see process).
// A holder that stalled that long finds a newer generation at its next
// renewal and stops before changing anything more.
const (
	compactLock = "compacting"
	// compactLockTTL: a compaction holds its lock in the background (Hold)
	// and checks it before each change (Keep), so a compactor killed part
	// way holds up the next one a minute at most.
	compactLockTTL = time.Minute
)

// Lease is a held lock.
type Lease struct {
	mu      sync.Mutex // Keep's, as Hold calls it beside its holder
	d       *Dir
	dir     string
	prefix  string
	ttl     time.Duration
	gen     uint64
	renewed time.Time
}

// lockState returns the newest generation of a lock in dir and its entry (a
// zero generation when there is none), and the names of every generation.
func (d *Dir) lockState(ctx context.Context, dir, prefix string) (uint64, entry, []string, error) {
	entries, err := d.b.list(ctx, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, entry{}, nil, err
	}
	var top uint64
	var newest entry
	var names []string
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.name, prefix)
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

// Lock takes the lock called name in dir, or fails with an error matching
// ErrLocked that names its holder. Its holder renews it within ttl.
func (d *Dir) Lock(ctx context.Context, dir, name string, ttl time.Duration) (*Lease, error) {
	prefix := "_" + name + "."
	top, e, names, err := d.lockState(ctx, dir, prefix)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if top > 0 && time.Since(e.mod) < ttl {
		holder := d.lockHolder(ctx, dir, e.name)
		if p, ok := holderProcess(holder); !ok || !p.gone() {
			who, _, _ := strings.Cut(holder, "\n")
			return nil, fmt.Errorf("%s: %w (%s, written %s ago by %s; taken over once %v pass without renewal)",
				dir, ErrLocked, e.name, time.Since(e.mod).Round(time.Second), who, ttl)
		}
	}
	l := &Lease{d: d, dir: dir, prefix: prefix, ttl: ttl, gen: top + 1}
	if err := l.write(ctx, true); errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s: %w (another process took it first)", dir, ErrLocked)
	} else if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// A dead holder's lock goes.
	if err := d.b.remove(ctx, dir, names...); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return l, nil
}

// lockHolder is what a lock file says of its holder.
func (d *Dir) lockHolder(ctx context.Context, dir, name string) string {
	f, size, err := d.b.open(ctx, path.Join(dir, name))
	if err != nil {
		return "a process gone since"
	}
	defer f.Close()
	b := make([]byte, min(size, 512))
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return "an unreadable holder"
	}
	return strings.TrimSpace(string(b))
}

func (l *Lease) name() string { return l.prefix + strconv.FormatUint(l.gen, 10) }

// write places the lock file, exclusively when taking it.
func (l *Lease) write(ctx context.Context, exclusive bool) error {
	host, _ := os.Hostname()
	now := time.Now()
	st, err := l.d.b.stage(ctx, l.dir, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "host %s, pid %d, at %s\n%s\n", host, os.Getpid(), now.UTC().Format(time.RFC3339), self())
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

// Keep checks that the lease still holds the lock, and renews it when a
// tenth of its time to live has passed: a compaction calls it before each
// change it makes.
func (l *Lease) Keep(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	top, _, _, err := l.d.lockState(ctx, l.dir, l.prefix)
	if err != nil {
		return fmt.Errorf("lock %s: %w", l.dir, err)
	}
	if top != l.gen || time.Since(l.renewed) >= l.ttl {
		return fmt.Errorf("%s: %w: this process went %v without renewing its lock, and another took it over",
			l.dir, ErrLocked, time.Since(l.renewed).Round(time.Second))
	}
	if time.Since(l.renewed) < l.ttl/10 {
		return nil
	}
	if err := l.write(ctx, false); err != nil {
		return fmt.Errorf("renew lock %s: %w", l.dir, err)
	}
	return nil
}

// Hold keeps the lease in the background, a tenth of its time to live
// apart, until stop is called. The returned context ends, with the reason
// as its cause, once the lease is lost.
func (l *Lease) Hold(ctx context.Context) (held context.Context, stop func()) {
	held, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 10)
		defer t.Stop()
		for {
			select {
			case <-held.Done():
				return
			case <-t.C:
				if err := l.Keep(held); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return held, func() {
		cancel(nil)
		<-done
	}
}

// Release removes the lock file, even when its holder was cancelled.
func (l *Lease) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A lock left behind is taken over once its time to live passes.
	_ = l.d.b.remove(ctx, l.dir, l.name())
}
