package offline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
)

// HighWaterMark returns the highest LastOffset of any complete batch written
// for stream to the log in dir (e.g. "events/transactions"), in any date
// partition; ok is false when there is none. Ingest skips input at or below it
// after a restart or a partition assignment, so that replays never duplicate
// rows, even when their batches are cut differently.
//
// A batch that spans dates is complete when all of its files are in place.
// The files of an incomplete batch above the mark (what a crash in the middle
// of WriteBatch leaves) are removed, as their rows are about to be written
// again; the caller must own stream.
//
// Only file footers are read, each once per Dir: the first call for a dir
// reads every file's; later calls look at directory modification times and
// read the footers of files that appeared since, written by another process
// (WriteBatch records this Dir's own files). An object store has no
// directory times: there each call lists the log's date partitions again,
// one request per partition and per thousand files. HighWaterMark is safe for
// concurrent use with itself and WriteBatch.
func (d *Dir) HighWaterMark(ctx context.Context, dir, stream string) (offset int64, ok bool, err error) {
	if err := validLogDir(dir); err != nil {
		return 0, false, fmt.Errorf("high water mark: %w", err)
	}
	ix, unlock, err := d.refreshed(ctx, dir)
	if err != nil {
		return 0, false, fmt.Errorf("high water mark %s: %w", dir, err)
	}
	defer unlock()
	s := ix.streams[stream]
	if s == nil {
		return 0, false, nil
	}
	if err := ix.dropIncomplete(ctx, d.b, dir, s); err != nil {
		return 0, false, fmt.Errorf("high water mark %s: %w", dir, err)
	}
	return s.hwm, s.ok, nil
}

// refreshed returns the index of a log directory brought up to date with
// the store, held exclusively until unlock is called.
func (d *Dir) refreshed(ctx context.Context, dir string) (ix *logIndex, unlock func(), err error) {
	ix = d.logIndex(dir)
	ix.lock.Lock()
	ix.mu.Lock()
	unlock = func() {
		ix.mu.Unlock()
		ix.lock.Unlock()
	}
	if err := ix.refresh(ctx, d.b, dir); err != nil {
		unlock()
		return nil, nil, err
	}
	return ix, unlock, nil
}

// logIndex is what is known of one log directory's files.
type logIndex struct {
	// lock is held shared by WriteBatch while it puts files in place and
	// exclusively while the index is refreshed from the disk.
	lock sync.RWMutex

	mu      sync.Mutex // guards the fields below
	scanned bool
	mod     time.Time             // of the directory when listed; zero: list it again
	parts   map[string]*partIndex // by date directory name
	streams map[string]*streamIndex
}

// partIndex is what is known of one date partition.
type partIndex struct {
	mod   time.Time // of the directory when listed; zero: list it again
	files map[string]fileInfo
}

// fileInfo is a log file's batch, from its metadata; zero for a file that
// has none.
type fileInfo struct {
	size        int64 // bytes
	stream      string
	first, last int64
	dates       string // comma-separated
	replaces    string // a compacted file's: the names it replaces, comma-separated
}

func (f fileInfo) key() batchKey { return batchKey{f.first, f.last, f.dates} }

type batchKey struct {
	first, last int64
	dates       string
}

type streamIndex struct {
	hwm int64 // the highest last offset of a complete batch
	ok  bool  // whether there is one
	// open holds the batches spanning dates that miss some of their files,
	// by the date directories of the files present.
	open map[batchKey]map[string]string
}

func (s *streamIndex) complete(last int64) {
	if !s.ok || last > s.hwm {
		s.hwm, s.ok = last, true
	}
}

// logIndex returns the index of a log directory, creating an empty one.
func (d *Dir) logIndex(dir string) *logIndex {
	d.mu.Lock()
	defer d.mu.Unlock()
	ix := d.logs[dir]
	if ix == nil {
		if d.logs == nil {
			d.logs = make(map[string]*logIndex)
		}
		ix = &logIndex{parts: make(map[string]*partIndex), streams: make(map[string]*streamIndex)}
		d.logs[dir] = ix
	}
	return ix
}

// added records files WriteBatch put in place, if the index has been built.
func (ix *logIndex) added(dates, names []string, sizes []int64, info fileInfo) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.scanned {
		return // the first refresh will read them
	}
	for i, name := range names {
		info.size = sizes[i]
		ix.add(ix.part(datePrefix+dates[i]), datePrefix+dates[i], name, info)
	}
}

func (ix *logIndex) part(name string) *partIndex {
	p := ix.parts[name]
	if p == nil {
		p = &partIndex{files: make(map[string]fileInfo)}
		ix.parts[name] = p
	}
	return p
}

func (ix *logIndex) add(p *partIndex, part, name string, info fileInfo) {
	if old, ok := p.files[name]; ok {
		if old == info {
			return
		}
		ix.remove(p, part, name)
	}
	p.files[name] = info
	if info.stream == "" {
		return
	}
	s := ix.streams[info.stream]
	if s == nil {
		s = &streamIndex{open: make(map[batchKey]map[string]string)}
		ix.streams[info.stream] = s
	}
	want := strings.Count(info.dates, ",") + 1
	if want == 1 || (s.ok && info.last <= s.hwm && s.open[info.key()] == nil) {
		s.complete(info.last)
		return
	}
	have := s.open[info.key()]
	if have == nil {
		have = make(map[string]string, want)
		s.open[info.key()] = have
	}
	have[part] = name
	if len(have) == want {
		delete(s.open, info.key())
		s.complete(info.last)
	}
}

// remove forgets a file that is gone. A complete batch stays complete.
func (ix *logIndex) remove(p *partIndex, part, name string) {
	info := p.files[name]
	delete(p.files, name)
	if s := ix.streams[info.stream]; s != nil {
		if have := s.open[info.key()]; have != nil && have[part] == name {
			delete(have, part)
			if len(have) == 0 {
				delete(s.open, info.key())
			}
		}
	}
}

// racyWindow is how recent a directory's modification time may be for a
// change made right after it was listed to leave the time unchanged, given
// coarse file system clocks. Such a directory is listed again next time.
const racyWindow = 2 * time.Second

func stableMod(t time.Time) time.Time {
	if time.Since(t) < racyWindow {
		return time.Time{}
	}
	return t
}

// refresh brings the index up to date with the log directory dir.
func (ix *logIndex) refresh(ctx context.Context, b bucket, dir string) error {
	mod, err := b.dirTime(ctx, dir)
	if errors.Is(err, fs.ErrNotExist) {
		for name, p := range ix.parts {
			ix.dropPart(p, name)
		}
		ix.scanned, ix.mod = true, time.Time{}
		return nil
	}
	if err != nil {
		return err
	}
	if !ix.scanned || ix.mod.IsZero() || !mod.Equal(ix.mod) {
		entries, err := b.list(ctx, dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		seen := make(map[string]bool, len(entries))
		for _, e := range entries {
			if e.dir && isDatePart(e.name) {
				seen[e.name] = true
				ix.part(e.name)
			}
		}
		for name, p := range ix.parts {
			if !seen[name] {
				ix.dropPart(p, name)
			}
		}
		ix.mod = stableMod(mod)
	}
	ix.scanned = true
	for name, p := range ix.parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ix.refreshPart(ctx, b, p, name, path.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (ix *logIndex) dropPart(p *partIndex, name string) {
	for f := range p.files {
		ix.remove(p, name, f)
	}
	delete(ix.parts, name)
}

// refreshPart lists a date partition if it changed since it was last listed,
// reading the footers of files not yet known.
func (ix *logIndex) refreshPart(ctx context.Context, b bucket, p *partIndex, name, dir string) error {
	mod, err := b.dirTime(ctx, dir)
	if errors.Is(err, fs.ErrNotExist) {
		ix.dropPart(p, name)
		return nil
	}
	if err != nil {
		return err
	}
	if !p.mod.IsZero() && mod.Equal(p.mod) {
		return nil
	}
	// Compaction puts a file in place, then removes those it replaces: a
	// listing meanwhile may miss both. So the partition is listed again
	// while it changed during the listing (on a disk), or lost a file no
	// file listed replaces, within reason.
	for try := 0; ; try++ {
		entries, err := b.list(ctx, dir)
		if errors.Is(err, fs.ErrNotExist) {
			ix.dropPart(p, name)
			return nil
		}
		if err != nil {
			return err
		}
		lost := false
		seen := make(map[string]bool, len(entries))
		for _, e := range entries {
			f := e.name
			if e.dir || strings.HasPrefix(f, ".") || !strings.HasSuffix(f, fileSuffix) {
				continue // temporary files among others
			}
			seen[f] = true
			if _, ok := p.files[f]; ok {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			info, err := readInfo(ctx, b, path.Join(dir, f))
			if errors.Is(err, fs.ErrNotExist) {
				delete(seen, f) // removed since it was listed
				lost = true
				continue
			}
			if err != nil {
				return err
			}
			ix.add(p, name, f, info)
		}
		covered := map[string]bool{}
		for f := range seen {
			for r := range strings.SplitSeq(p.files[f].replaces, ",") {
				covered[r] = true
			}
		}
		for f := range p.files {
			if !seen[f] {
				lost = lost || !covered[f]
				ix.remove(p, name, f)
			}
		}
		after, err := b.dirTime(ctx, dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if try == 10 || !lost && after.Equal(mod) {
			break
		}
		mod = after
	}
	p.mod = stableMod(mod)
	return nil
}

// dropIncomplete removes the files of s's incomplete batches above its mark
// from the log directory dir.
func (ix *logIndex) dropIncomplete(ctx context.Context, b bucket, dir string, s *streamIndex) error {
	for k, have := range s.open {
		if s.ok && k.last <= s.hwm {
			continue
		}
		for part, name := range have {
			if err := b.remove(ctx, path.Join(dir, part), name); err != nil {
				return fmt.Errorf("remove incomplete batch: %w", err)
			}
			if p := ix.parts[part]; p != nil {
				ix.remove(p, part, name)
			}
		}
	}
	return nil
}

func isDatePart(name string) bool {
	d, ok := strings.CutPrefix(name, datePrefix)
	if !ok {
		return false
	}
	_, err := time.Parse(dateLayout, d)
	return err == nil
}

// readInfo reads the batch identity from a log file's footer.
func readInfo(ctx context.Context, b bucket, name string) (fileInfo, error) {
	f, size, err := b.open(ctx, name)
	if err != nil {
		return fileInfo{}, err
	}
	defer f.Close()
	pf, err := parquet.OpenFile(f, size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.OptimisticRead(true))
	if err != nil {
		return fileInfo{}, fmt.Errorf("read footer of %s: %w", name, err)
	}
	stream, ok := pf.Lookup(MetaStream)
	if !ok || stream == "" {
		replaces, _ := pf.Lookup(MetaReplaces)
		return fileInfo{size: size, replaces: replaces}, nil // not a batch's file
	}
	info := fileInfo{size: size, stream: stream}
	first, _ := pf.Lookup(MetaFirstOffset)
	last, _ := pf.Lookup(MetaLastOffset)
	info.first, err = strconv.ParseInt(first, 10, 64)
	if err == nil {
		info.last, err = strconv.ParseInt(last, 10, 64)
	}
	if err != nil {
		return fileInfo{}, fmt.Errorf("read footer of %s: bad offsets %q, %q", name, first, last)
	}
	info.dates, _ = pf.Lookup(MetaBatchDates)
	return info, nil
}
