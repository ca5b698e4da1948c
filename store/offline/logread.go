package offline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/quiver-ml/quiver/features"
)

// ReadLogFile reads a file of the store as ReadFile does, by its name in the
// store (as LogFiles lists it): the columns, every row in file order and the
// file's key/value metadata. Given column names, it reads only the file's
// columns among them: those alone are in cols and rows. EachLogGroup reads
// a file too large to hold decoded.
//
// A file that compaction replaced and removed since it was listed is read
// in its replacement: the same rows, in the same order, and no metadata.
// The error matches fs.ErrNotExist when there is neither.
func (d *Dir) ReadLogFile(ctx context.Context, name string, columns ...string) (cols []Column, rows [][]features.Value, meta map[string]string, err error) {
	meta, err = d.eachLogGroup(ctx, name, columns, func(c []Column, data []ColumnValues) error {
		cols, rows = c, append(rows, rowsOf(data)...)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return cols, rows, meta, nil
}

// EachLogGroup reads a file of the store as ReadLogFile does, a row group at
// a time, column by column: it calls fn with the columns read and their
// values in each of the group's rows (data[i] is column cols[i]'s), in file
// order. So it holds one row group decoded at a time, besides what fn
// keeps. It reads a file of up to 8 MiB with one read (one request to an
// object store), and a larger one with a read per row group besides its
// footer's.
//
// A file that compaction replaced and removed since it was listed, before
// or while it is read, is read on in its replacement, from the row after
// the last one handed to fn. The error matches fs.ErrNotExist when there
// is neither; an error of fn ends the reading and is returned as it is.
func (d *Dir) EachLogGroup(ctx context.Context, name string, columns []string, fn func(cols []Column, data []ColumnValues) error) error {
	_, err := d.eachLogGroup(ctx, name, columns, fn)
	return err
}

// eachLogGroup is EachLogGroup, returning the file's metadata: nil if the
// file was gone before it could be opened.
func (d *Dir) eachLogGroup(ctx context.Context, name string, columns []string, fn func([]Column, []ColumnValues) error) (map[string]string, error) {
	done := 0 // rows handed to fn
	var fnErr error
	count := func(cols []Column, data []ColumnValues) error {
		if fnErr = fn(cols, data); fnErr == nil && len(data) > 0 {
			done += data[0].Len()
		}
		return fnErr
	}
	var meta map[string]string
	f, err := d.openGroups(ctx, name, columns)
	if err == nil {
		meta = f.pf.meta
		err = f.each(0, f.rows(), count)
		f.Close()
	}
	if fnErr != nil || !errors.Is(err, fs.ErrNotExist) {
		return meta, err
	}
	// Removed: the rest of its rows are in the compacted file that
	// replaces it, which may be replaced and removed in turn.
	partDir, base := path.Split(name)
	partDir = path.Clean(partDir)
	logDir, part := path.Split(partDir)
	logDir = path.Clean(logDir)
	if validLogDir(logDir) != nil {
		return meta, err // not a log's file
	}
	for range 5 {
		by, serr := d.replacement(ctx, logDir, part, base)
		if serr != nil {
			return meta, serr
		}
		if by == "" {
			return meta, err
		}
		f, rerr := d.openGroups(ctx, path.Join(partDir, by), columns)
		if rerr == nil {
			var spans map[string][2]int
			spans, rerr = parseReplacedRows(f.pf.meta[MetaReplacedRows])
			span, ok := spans[base]
			switch {
			case rerr != nil:
				rerr = fmt.Errorf("read %s, replaced by %s: %w", name, by, rerr)
			case !ok || span[1] > f.rows() || span[0]+done > span[1]:
				rerr = fmt.Errorf("read %s: replaced by %s, which does not say where its rows are", name, by)
			default:
				rerr = f.each(span[0]+done, span[1], count)
			}
			f.Close()
		}
		if fnErr != nil || !errors.Is(rerr, fs.ErrNotExist) {
			return meta, rerr
		}
		err = rerr
	}
	return meta, err
}

// replacement returns the file of a log's partition whose metadata says it
// replaces the file base, or "" if there is none.
func (d *Dir) replacement(ctx context.Context, logDir, part, base string) (string, error) {
	snap, err := d.snapshot(ctx, logDir)
	if err != nil {
		return "", err
	}
	for f, info := range snap.parts[part] {
		if info.replaces != "" && slices.Contains(strings.Split(info.replaces, ","), base) {
			return f, nil
		}
	}
	return "", nil
}

// groupFile is a Parquet file of the store open to read a row group at a
// time.
type groupFile struct {
	name string
	f    file
	r    *spanReader
	pf   *parquetFile
}

// openGroups opens a file of the store to read its columns named in
// columns, or all of them if there are none.
func (d *Dir) openGroups(ctx context.Context, name string, columns []string) (*groupFile, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, size, err := d.b.open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	r := &spanReader{r: f, size: size}
	if size <= readWhole {
		if err := r.load(0, size); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
	pf, err := openParquet(r, size, columns)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return &groupFile{name: name, f: f, r: r, pf: pf}, nil
}

// readWhole is the size up to which a file is read whole when opened, with
// one read (one request to an object store) rather than one for its footer
// and one per row group: most files ingest writes.
var readWhole int64 = 8 << 20

// rows returns the file's rows, as its footer counts them.
func (g *groupFile) rows() int { return int(g.pf.f.NumRows()) }

// each calls fn with the file's rows lo to hi (excluded), a row group at a
// time, cut to those rows.
func (g *groupFile) each(lo, hi int, fn func(cols []Column, data []ColumnValues) error) error {
	first := 0 // the group's first row
	for i, rg := range g.pf.f.RowGroups() {
		n := int(rg.NumRows())
		from, to := max(lo, first)-first, min(hi, first+n)-first
		first += n
		if from >= to {
			continue
		}
		off, size := g.pf.groupSpan(i)
		if err := g.r.load(off, size); err != nil {
			return fmt.Errorf("read %s: %w", g.name, err)
		}
		data, err := g.pf.rowGroup(i)
		if err != nil {
			return fmt.Errorf("read %s: %w", g.name, err)
		}
		for j := range data {
			data[j] = data[j].slice(from, to)
		}
		if err := fn(g.pf.cols, data); err != nil {
			return err
		}
	}
	return nil
}

func (g *groupFile) Close() error { return g.f.Close() }

// groupSpan returns where the bytes of row group i's columns read lie in
// the file: from off, size bytes; 0, 0 if the footer does not say so
// sensibly.
func (pf *parquetFile) groupSpan(i int) (off, size int64) {
	lo, hi := int64(-1), int64(0)
	for c, cc := range pf.f.Metadata().RowGroups[i].Columns {
		if c >= len(pf.at) || pf.at[c] < 0 {
			continue
		}
		m := cc.MetaData
		start := m.DataPageOffset
		if d := m.DictionaryPageOffset; d > 0 && d < start {
			start = d
		}
		if start < 0 || m.TotalCompressedSize < 0 {
			return 0, 0
		}
		if lo < 0 || start < lo {
			lo = start
		}
		hi = max(hi, start+m.TotalCompressedSize)
	}
	if lo < 0 {
		return 0, 0
	}
	return lo, hi - lo
}

// spanReader reads a file through a buffer that holds one span of it, read
// with one read: the pages of a row group's columns, which a Parquet
// reader reads in many small reads.
type spanReader struct {
	r    io.ReaderAt
	size int64 // the file's
	off  int64
	buf  []byte // the file's bytes from off
}

// load reads size bytes of the file from off into the buffer, replacing
// what it held, unless it holds them already; a span that does not fit in
// the file is not loaded, and reads go to the file.
func (s *spanReader) load(off, size int64) error {
	if off >= s.off && off-s.off <= int64(len(s.buf))-size {
		return nil
	}
	s.buf = s.buf[:0]
	if size <= 0 || off < 0 || off > s.size-size {
		return nil
	}
	buf := slices.Grow(s.buf, int(size))[:size]
	if n, err := s.r.ReadAt(buf, off); n < len(buf) {
		return err
	}
	s.off, s.buf = off, buf
	return nil
}

func (s *spanReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.off && off-s.off <= int64(len(s.buf))-int64(len(p)) {
		return copy(p, s.buf[off-s.off:]), nil
	}
	return s.r.ReadAt(p, off)
}
