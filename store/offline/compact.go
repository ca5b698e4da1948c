package offline

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/quiver-ml/quiver/features"
)

// The key/value metadata of a compacted file.
const (
	// MetaReplaces: the names of the files of its date partition it
	// replaces, comma-separated. Readers skip a replaced file from the
	// moment its replacement is in place.
	MetaReplaces = "quiver.replaces"
	// MetaReplacedRows: where each replaced file's rows are in it, as
	// name=first:end (end excluded), comma-separated: a reader that listed
	// a file before it was replaced and removed reads them there.
	MetaReplacedRows = "quiver.replaced_rows"
)

// LogFile is a file of a log, as LogFiles lists it.
type LogFile struct {
	// Name is the file's name in the store, slash-separated, e.g.
	// "events/transactions/date=2026-03-01/<ksuid>.parquet": ReadLogFile
	// reads it.
	Name string
	Size int64 // bytes
}

// LogFiles returns the Parquet files of a log directory (events/<source>,
// features/<view>/v<version>) that hold its rows: every date, sorted by
// date then name (names sort by time), without temporary files, files a
// compacted file replaces, or files of batches not yet complete. A log with
// no files yet has none.
//
// The dates are listed one after another, so a batch another process
// completes meanwhile may show in one date and not in another: a reader
// that must know what it covered takes Marks first and reads only rows at
// or below them.
func (d *Dir) LogFiles(ctx context.Context, dir string) ([]LogFile, error) {
	snap, err := d.snapshot(ctx, dir)
	if err != nil {
		return nil, err
	}
	var files []LogFile
	for _, part := range slices.Sorted(maps.Keys(snap.parts)) {
		p := snap.parts[part]
		for _, name := range slices.Sorted(maps.Keys(p)) {
			if !snap.replaced[part][name] && !snap.open[part][name] {
				files = append(files, LogFile{Name: path.Join(dir, part, name), Size: p[name].size})
			}
		}
	}
	return files, nil
}

// Marks returns every stream's high-water mark in a log directory: the last
// offset of its newest complete batch. Unlike HighWaterMark it changes
// nothing, so any process may call it. Every batch at or below a mark is in
// place, and stays visible to LogFiles (compaction keeps its rows).
func (d *Dir) Marks(ctx context.Context, dir string) (map[string]int64, error) {
	snap, err := d.snapshot(ctx, dir)
	if err != nil {
		return nil, err
	}
	return snap.newest, nil
}

// logSnapshot is a log directory's files as the index knew them at one
// moment.
type logSnapshot struct {
	parts    map[string]map[string]fileInfo // date partition → name → info
	replaced map[string]map[string]bool     // date partition → names a present compacted file replaces
	newest   map[string]int64               // stream → last offset of its newest complete batch
	open     map[string]map[string]bool     // date partition → files of incomplete batches above their stream's mark
}

func (d *Dir) snapshot(ctx context.Context, dir string) (*logSnapshot, error) {
	if err := validLogDir(dir); err != nil {
		return nil, err
	}
	ix, unlock, err := d.refreshed(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	defer unlock()
	s := &logSnapshot{parts: map[string]map[string]fileInfo{}, replaced: map[string]map[string]bool{},
		newest: map[string]int64{}, open: map[string]map[string]bool{}}
	for part, p := range ix.parts {
		s.parts[part] = maps.Clone(p.files)
		s.replaced[part] = map[string]bool{}
		s.open[part] = map[string]bool{}
		for _, info := range p.files {
			if info.replaces != "" {
				for name := range strings.SplitSeq(info.replaces, ",") {
					s.replaced[part][name] = true
				}
			}
		}
	}
	for stream, st := range ix.streams {
		hwm, ok := st.hwm, st.ok
		// A batch whose missing files a compacted file replaces is
		// complete: its rows are all there. (This index may have seen its
		// files only after compaction removed some.)
		for k, have := range st.open {
			if (!ok || k.last > hwm) && s.replacedRest(stream, k, have) {
				hwm, ok = k.last, true
			}
		}
		if ok {
			s.newest[stream] = hwm
		}
		for k, have := range st.open {
			// Below the mark, a batch that looks incomplete lost a date's
			// file to compaction: its rows are all there.
			if ok && k.last <= hwm {
				continue
			}
			for part, name := range have {
				if s.open[part] != nil {
					s.open[part][name] = true
				}
			}
		}
	}
	return s, nil
}

// replacedRest reports whether the files a batch of stream lacks (it has
// have, by date partition) are replaced by compacted files.
func (s *logSnapshot) replacedRest(stream string, k batchKey, have map[string]string) bool {
	var t time.Time // a batch's files share their name's time
	for _, name := range have {
		id, err := ksuid.Parse(strings.TrimSuffix(name, fileSuffix))
		if err != nil {
			return false
		}
		t = id.Time()
		break
	}
	for date := range strings.SplitSeq(k.dates, ",") {
		part := datePrefix + date
		if _, ok := have[part]; !ok && !s.replaced[part][batchFileName(stream, k.first, k.last, date, t)] {
			return false
		}
	}
	return true
}

// CompactOptions tune Compact.
type CompactOptions struct {
	// TargetBytes is the size compaction aims for: smaller files are merged
	// into files of up to about this size. Default 128 MiB.
	TargetBytes int64
	// Grace is how long a replaced file stays after its replacement
	// appeared. Zero removes it at once: every reader then sees each row
	// once, Parquet readers of the directory (DuckDB, Spark, pyarrow)
	// included, and this package's readers that listed it before read its
	// rows in its replacement. A grace period serves other readers that
	// list the log through LogFiles and read it later; within it, readers
	// of the bare directory see the replaced rows twice.
	//
	// Temporary files that writers killed mid-write left on a local disk
	// are removed once older than both Grace and an hour.
	Grace time.Duration
}

// staleTemp is the least time a temporary file must have gone unmodified
// before compaction takes it for a dead writer's and removes it.
//
// Grace alone will not do: it is zero by default, which is safe for a
// replaced file (its rows are in place in its replacement) but not for a
// temporary file, whose writer may still be alive and about to put it in
// place; removed, that write fails. A live writer modifies its file as it
// writes it, but may then leave it untouched for a while before placing it:
// WriteBatch stages every date's file before it places any, and waits for
// any refresh of the index; the process may be paused or stalled on a slow
// disk; and on a shared file system the modification time comes from
// another clock. An hour is far beyond any of these.
const staleTemp = time.Hour

// mergeGroupRows is the size of a compacted file's row groups, but its
// last: a row group is what a merge, and readers, hold decoded at a time.
var mergeGroupRows = 1 << 18

// errNothingMerged stops a merge whose files were removed or changed
// columns since they were listed.
var errNothingMerged = errors.New("nothing to merge")

// CompactStats is what a compaction did.
type CompactStats struct {
	Merged  int   // files merged into others
	Written int   // compacted files written
	Removed int   // replaced files removed after their grace period
	Temps   int   // stale temporary files removed (on a local disk)
	Rows    int64 // rows moved
}

// Compact merges the small files of a log directory, date by date, into
// larger ones, safely beside a running ingest and readers:
//
//   - A compacted file appears atomically (written, synced, renamed) and
//     names the files it replaces (MetaReplaces); readers listing the log
//     with LogFiles skip them from then on, so they see every row once.
//   - The replaced files are removed once their replacement is in place,
//     or later, with a grace period, once it is older than that. A reader
//     of this package that listed the log before reads a removed file's
//     rows in its replacement (MetaReplacedRows).
//   - On a local disk, the temporary files of writers and compactors killed
//     mid-write are removed once they are older than the grace period and
//     an hour: a live writer's is never that old.
//   - The newest complete batch of each stream, and the files of incomplete
//     batches, are left in place: high-water marks, and ingest's cleanup of
//     a crash's partial batches, work as before.
//
// Files are merged only with files of the same columns. One compaction of
// a log runs at a time, in whatever processes: another one fails with an
// error matching ErrLocked. A log with no files is left as it is.
func (d *Dir) Compact(ctx context.Context, dir string, opts CompactOptions) (CompactStats, error) {
	if opts.TargetBytes <= 0 {
		opts.TargetBytes = 128 << 20
	}
	var stats CompactStats
	snap, err := d.snapshot(ctx, dir)
	if err != nil {
		return stats, fmt.Errorf("compact %s: %w", dir, err)
	}
	if len(snap.parts) == 0 {
		return stats, nil
	}
	l, err := d.Lock(ctx, dir, compactLock, compactLockTTL)
	if err != nil {
		return stats, fmt.Errorf("compact %w", err)
	}
	defer l.Release()
	ctx, stop := l.Hold(ctx)
	defer stop()
	// Listed again under the lock: a compaction that held it may have
	// changed the log since.
	if snap, err = d.snapshot(ctx, dir); err != nil {
		return stats, fmt.Errorf("compact %s: %w", dir, err)
	}
	for _, part := range slices.Sorted(maps.Keys(snap.parts)) {
		if ctx.Err() != nil {
			return stats, context.Cause(ctx) // the caller's, or the lock lost
		}
		if err := d.compactPart(ctx, dir, part, snap, opts, l, &stats); err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return stats, fmt.Errorf("compact %s/%s: %w", dir, part, err)
		}
	}
	return stats, nil
}

type candidate struct {
	name string
	size int64
	info fileInfo
}

func (d *Dir) compactPart(ctx context.Context, dir, part string, snap *logSnapshot, opts CompactOptions, l *Lease, stats *CompactStats) error {
	partDir := path.Join(dir, part)
	files := snap.parts[part]
	// Temporary files a crash left behind go (see staleTemp). On S3 there
	// are none: the bucket is not a tempRemover, and nothing changes there.
	if tr, ok := d.b.(tempRemover); ok {
		n, err := tr.removeTemps(ctx, partDir, time.Now().Add(-max(opts.Grace, staleTemp)))
		stats.Temps += n
		if err != nil {
			return err
		}
	}
	// Replaced files past their grace period go.
	var gone []string
	for _, name := range slices.Sorted(maps.Keys(files)) {
		info := files[name]
		if info.replaces == "" {
			continue
		}
		st, err := d.b.stat(ctx, path.Join(partDir, name))
		if err != nil || time.Since(st.mod) < opts.Grace {
			continue
		}
		for old := range strings.SplitSeq(info.replaces, ",") {
			if _, present := files[old]; present {
				gone = append(gone, old)
			}
		}
	}
	if len(gone) > 0 {
		if err := l.Keep(ctx); err != nil {
			return err
		}
		if err := d.b.remove(ctx, partDir, gone...); err != nil {
			return err
		}
	}
	stats.Removed += len(gone)

	var cands []candidate
	for _, name := range slices.Sorted(maps.Keys(files)) {
		info := files[name]
		if snap.replaced[part][name] || snap.open[part][name] {
			continue
		}
		if last, ok := snap.newest[info.stream]; ok && info.stream != "" && info.last == last {
			continue // the stream's newest batch holds its high-water mark
		}
		if info.size < opts.TargetBytes {
			cands = append(cands, candidate{name, info.size, info})
		}
	}
	// Merge runs of files, in name (time) order, of up to TargetBytes.
	for len(cands) >= 2 {
		n, size := 0, int64(0)
		for n < len(cands) && (n < 2 || size+cands[n].size <= opts.TargetBytes) {
			size += cands[n].size
			n++
		}
		var remove map[string]fileInfo // with no grace period: the partition's files, to remove those replaced
		if opts.Grace == 0 {
			remove = files
		}
		other, err := d.merge(ctx, dir, part, cands[:n], remove, l, stats)
		if err != nil {
			return err
		}
		cands = append(other, cands[n:]...)
	}
	return nil
}

// merge writes the rows of files into one compacted file, in their order:
// those with the first's columns. It returns the others, for the next run
// (after a schema change, the newer files merge together). The files it
// replaces that are in remove (the partition's, or nil) go once it is in
// place. Rows are read a row group at a time and written in groups of
// mergeGroupRows, so that its memory does not grow with the files.
func (d *Dir) merge(ctx context.Context, dir, part string, files []candidate, remove map[string]fileInfo, l *Lease, stats *CompactStats) ([]candidate, error) {
	partDir := path.Join(dir, part)
	var cols []Column
	var names []string
	var at []string // MetaReplacedRows
	var other []candidate
	merged, rows := 0, 0
	out, err := d.b.stage(ctx, partDir, func(w io.Writer) error {
		var pw *Writer
		var group [][]features.Value
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Not ReadLogFile: a file removed since would be read in its
			// replacement, which keeps its rows.
			name := path.Join(partDir, f.name)
			gf, err := d.openGroups(ctx, name, nil)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since: nothing to merge
			}
			if err != nil {
				return err
			}
			pf := gf.pf
			if cols == nil {
				cols = pf.cols
				if pw, err = NewWriter(w, cols, nil); err != nil {
					gf.Close()
					return err
				}
			} else if !slices.Equal(pf.cols, cols) {
				gf.Close()
				other = append(other, f)
				continue
			}
			first := rows
			err = gf.each(0, gf.rows(), func(_ []Column, data []ColumnValues) error {
				r := rowsOf(data)
				group = append(group, r...)
				rows += len(r)
				for len(group) >= mergeGroupRows {
					if err := pw.Write(group[:mergeGroupRows]); err != nil {
						return err
					}
					group = append(group[:0], group[mergeGroupRows:]...)
				}
				return nil
			})
			gf.Close()
			if err != nil {
				return err
			}
			merged++
			names = append(names, f.name)
			at = append(at, fmt.Sprintf("%s=%d:%d", f.name, first, rows))
			if f.info.replaces != "" {
				names = append(names, strings.Split(f.info.replaces, ",")...)
				inner, err := parseReplacedRows(pf.meta[MetaReplacedRows])
				if err != nil {
					return fmt.Errorf("%s: %w", f.name, err)
				}
				for name, r := range inner {
					at = append(at, fmt.Sprintf("%s=%d:%d", name, first+r[0], first+r[1]))
				}
			}
		}
		if merged < 2 {
			return errNothingMerged
		}
		if len(group) > 0 {
			if err := pw.Write(group); err != nil {
				return err
			}
		}
		slices.Sort(names)
		names = slices.Compact(names)
		slices.Sort(at)
		pw.SetMeta(MetaReplaces, strings.Join(names, ","))
		pw.SetMeta(MetaReplacedRows, strings.Join(at, ","))
		return pw.Close()
	})
	if errors.Is(err, errNothingMerged) {
		return other, nil
	}
	replaces := strings.Join(names, ",")
	if err != nil {
		return nil, err
	}
	defer out.discard()
	if err := l.Keep(ctx); err != nil {
		return nil, err
	}
	name := compactedName(files[0].name, replaces)
	ix := d.logIndex(dir)
	ix.lock.RLock()
	defer ix.lock.RUnlock()
	if err := out.place(ctx, name, false); err != nil {
		return nil, err
	}
	ix.added([]string{strings.TrimPrefix(part, datePrefix)}, []string{name}, []int64{out.size()}, fileInfo{replaces: replaces})
	stats.Written++
	stats.Merged += merged
	stats.Rows += int64(rows)
	var gone []string
	for _, n := range names {
		if _, ok := remove[n]; ok {
			gone = append(gone, n)
		}
	}
	if err := d.b.remove(ctx, partDir, gone...); err != nil {
		return nil, err
	}
	stats.Removed += len(gone)
	return other, nil
}

// parseReplacedRows parses MetaReplacedRows: each replaced file's first
// row and end.
func parseReplacedRows(s string) (map[string][2]int, error) {
	rows := map[string][2]int{}
	if s == "" {
		return rows, nil
	}
	for entry := range strings.SplitSeq(s, ",") {
		name, span, ok := strings.Cut(entry, "=")
		lo, hi, ok2 := strings.Cut(span, ":")
		first, err := strconv.Atoi(lo)
		end, err2 := strconv.Atoi(hi)
		if !ok || !ok2 || err != nil || err2 != nil || first < 0 || end < first {
			return nil, fmt.Errorf("bad %s entry %q", MetaReplacedRows, entry)
		}
		rows[name] = [2]int{first, end}
	}
	return rows, nil
}

// compactedName names a compacted file by the time of the first file it
// merges and a hash of what it replaces: the same merge gets the same name.
func compactedName(first, replaces string) string {
	id, err := ksuid.Parse(strings.TrimSuffix(first, fileSuffix))
	t := time.Unix(1400000000, 0)
	if err == nil {
		t = id.Time()
	}
	sum := sha256.Sum256([]byte(replaces))
	out, err := ksuid.FromParts(t, sum[:16])
	if err != nil {
		panic(err) // the payload has the right size
	}
	return out.String() + fileSuffix
}
