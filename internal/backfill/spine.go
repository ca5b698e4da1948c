package backfill

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// spine is the input of a dataset: rows of labelled entities at times, in
// the order they are to be written.
type spine struct {
	path  string
	cols  []offline.Column
	table *table  // the values, a column per cols
	times []int64 // per row, epoch ms: the timestamp column's values
	// past: per row, whether its time has digits below the millisecond,
	// so that the events of that millisecond precede it (te < t).
	past []bool
	// sharded: the rows are one shard's, of spineRows in the whole spine,
	// built by the run run names (MetaRun), of runParts (MetaRunParts).
	sharded   bool
	spineRows int
	run       string
	runParts  string
	shard     Shard // which, when sharded (MetaShard)
}

// len is the spine's row count.
func (s *spine) len() int { return s.table.rows() }

// SpineError is a problem with the spine file, naming the file and, where
// there is one, the row: a CSV's counted from its header (row 1), its line
// unless a quoted field spans lines; a Parquet file's from its first.
type SpineError struct {
	File string
	Row  int // a CSV's counted from its header; a Parquet file's from its first
	Err  error
}

func (e *SpineError) Error() string {
	if e.Row > 0 {
		return fmt.Sprintf("spine %s: %s: %v", e.File, rowName(e.File, e.Row), e.Err)
	}
	return fmt.Sprintf("spine %s: %v", e.File, e.Err)
}

func (e *SpineError) Unwrap() error { return e.Err }

// rowName names row r of the spine file path as SpineError counts, saying
// how a CSV's are: its header is row 1, a Parquet file's first row is.
func rowName(path string, r int) string {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return "row " + strconv.Itoa(r) + " (the header is row 1)"
	}
	return "row " + strconv.Itoa(r)
}

// readSpine reads a CSV or Parquet spine (by extension). keys are the join
// keys the features need, with their types; tsCol is the timestamp column.
//
// Given a shard, it keeps only the shard's rows (spineShard), numbered in
// a last column of the table, SpineRowColumn, which Merge orders by: a
// shard holds its share of the spine, not all of it.
func readSpine(path, tsCol string, keys map[string]features.Type, sh *spineShard) (*spine, error) {
	var s *spine
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		s, err = readCSV(path, keys, sh)
	case ".parquet":
		s, err = readParquet(path, sh)
	default:
		return nil, &SpineError{File: path, Err: errors.New("want a .csv or .parquet file")}
	}
	if err != nil {
		return nil, err
	}
	s.path = path
	if index(s.cols, SpineRowColumn) >= 0 {
		return nil, &SpineError{File: path, Err: fmt.Errorf("column %q: the name is reserved for the row numbers of a shard's dataset", SpineRowColumn)}
	}
	if err := s.check(path, tsCol, keys); err != nil {
		return nil, err
	}
	if s.sharded {
		s.cols = append(s.cols, offline.Column{Name: SpineRowColumn, Type: features.TypeInt})
	}
	return s, nil
}

// spineSize returns about how many rows and columns the spine at path
// has, and how many bytes of text its values are at most, without reading
// its rows: a Parquet file's footer says (its values' bytes
// uncompressed); a CSV file's line breaks outside quotes are counted, and
// its bytes are the text.
func spineSize(path string) (rows int64, cols int, text int64, err error) {
	if strings.EqualFold(filepath.Ext(path), ".parquet") {
		r, err := offline.OpenFile(path)
		if err != nil {
			return 0, 0, 0, err
		}
		defer r.Close()
		return r.NumRows(), len(r.Columns()), r.DataBytes(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	header, err := newCSVReader(f).Read()
	if err != nil {
		return 0, 0, 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, 0, err
	}
	buf, quoted := make([]byte, 1<<20), false
	for {
		n, err := f.Read(buf)
		rows += lineBreaks(buf[:n], &quoted)
		text += int64(n)
		if err == io.EOF {
			return max(0, rows-1), len(header), text, nil
		}
		if err != nil {
			return 0, 0, 0, err
		}
	}
}

// lineBreaks counts b's line breaks outside quotes, quoted saying whether
// b starts in quotes and, on return, whether it ends in them.
func lineBreaks(b []byte, quoted *bool) (n int64) {
	for len(b) > 0 {
		if !*quoted {
			q := bytes.IndexByte(b, '"')
			if q < 0 {
				return n + int64(bytes.Count(b, []byte{'\n'}))
			}
			n += int64(bytes.Count(b[:q], []byte{'\n'}))
			b, *quoted = b[q+1:], true
			continue
		}
		q := bytes.IndexByte(b, '"') // a doubled quote leaves and enters again
		if q < 0 {
			return n
		}
		b, *quoted = b[q+1:], false
	}
	return n
}

// spineShard is the shard of a spine's rows a dataset is built for: those
// whose entity, by its join keys, hashes to Index of Count. A shard builds
// the state of its entities only, so shards split the work of the engine,
// not just the spine.
type spineShard struct {
	Shard
	keys []string // the first entity's join keys
	at   []int    // by key, its column, once the columns are known
	vals []features.Value
	key  []byte
}

// locate finds the keys' columns; a key the spine lacks keeps every row,
// for check to name it.
func (sh *spineShard) locate(cols []offline.Column) {
	sh.at = sh.at[:0]
	for _, k := range sh.keys {
		j := index(cols, k)
		if j < 0 {
			sh.at = nil
			return
		}
		sh.at = append(sh.at, j)
	}
	sh.vals = make([]features.Value, len(sh.at))
}

// keeps reports whether a row, its value in column j given by value, is
// the shard's. Not safe for concurrent use: each reader has its own copy.
func (sh *spineShard) keeps(value func(j int) features.Value) bool {
	if sh.at == nil {
		return true
	}
	for i, j := range sh.at {
		sh.vals[i] = value(j)
	}
	sh.key, _ = online.AppendEntityKey(sh.key[:0], sh.vals...)
	return xxhash.Sum64(sh.key)%uint64(sh.Count) == uint64(sh.Index)
}

// clone returns a copy for another goroutine; nil for nil.
func (sh *spineShard) clone() *spineShard {
	if sh == nil {
		return nil
	}
	c := *sh
	c.at, c.vals, c.key = slices.Clone(sh.at), make([]features.Value, len(sh.vals)), nil
	return &c
}

// check finds the timestamp column, converts it to times, and checks that
// every join key is a column of its type with no nulls.
func (s *spine) check(path, tsCol string, keys map[string]features.Type) error {
	var problems []string
	ts := -1
	for j, c := range s.cols {
		if c.Name == tsCol {
			ts = j
		}
	}
	if ts < 0 {
		problems = append(problems, fmt.Sprintf("no timestamp column %q (columns: %s)", tsCol, names(s.cols)))
	}
	var keyCols []int // in the keys' order, so that errors are the same every time
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		j := index(s.cols, k)
		switch {
		case j < 0:
			problems = append(problems, fmt.Sprintf("no column %q: the features' entities need it as a join key", k))
		case s.cols[j].Type != features.TypeString && s.cols[j].Type != features.TypeInt:
			// Either names an entity: an int and its decimal text are one
			// key (online.AppendEntityKey), as in a lookup.
			problems = append(problems, fmt.Sprintf("join key column %q is %s, want string or int", k, s.cols[j].Type))
		}
		keyCols = append(keyCols, j)
	}
	if len(problems) > 0 {
		return &SpineError{File: path, Err: errors.New(strings.Join(problems, "; "))}
	}
	s.times, s.past = make([]int64, s.len()), make([]bool, s.len())
	for i := range s.times {
		t, err := timestamp(s.table.get(i, ts))
		if err != nil {
			return &SpineError{File: path, Row: s.fileRow(i), Err: fmt.Errorf("column %q: %w", tsCol, err)}
		}
		s.times[i], s.past[i] = t.Int(), t.Nano() != 0
		for _, j := range keyCols {
			if s.table.get(i, j).IsNull() {
				return &SpineError{File: path, Row: s.fileRow(i), Err: fmt.Errorf("join key %q is empty", s.cols[j].Name)}
			}
		}
	}
	return nil
}

// headerRows is how many rows come before the first data row in the file.
// fileRow returns the row of the file (as SpineError counts) that row r
// of the spine came from.
func (s *spine) fileRow(r int) int {
	if s.sharded {
		r = int(s.table.get(r, s.table.width-1).Int()) // SpineRowColumn
	}
	return r + 1 + s.headerRows(s.path)
}

func (s *spine) headerRows(path string) int {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return 1
	}
	return 0
}

// timestamp reads a spine time: a timestamp, an RFC 3339 string, or an
// integer of epoch milliseconds.
func timestamp(v features.Value) (features.Value, error) {
	switch v.Type() {
	case features.TypeTimestamp:
		return v, features.CheckTime(v.Int())
	case features.TypeInt:
		return features.Timestamp(v.Int()), features.CheckTime(v.Int())
	case features.TypeString:
		if ms, err := strconv.ParseInt(v.Str(), 10, 64); err == nil {
			return features.Timestamp(ms), features.CheckTime(ms)
		}
		// As in a column of numbers alone, typed TypeFloat.
		if f, ok := decimal(v.Str()); ok {
			return timestamp(features.Float(f))
		}
		t, err := features.ParseTimestamp(v.Str())
		if err != nil && !errors.Is(err, features.ErrTimeRange) {
			return t, fmt.Errorf("%q is not an RFC 3339 time or epoch milliseconds", v.Str())
		}
		return t, err
	case features.TypeFloat: // a CSV column of epoch ms, a fraction or exponent in some row
		ms := v.Float()
		if ms != math.Trunc(ms) || math.Abs(ms) > 1<<53 {
			return features.Null, fmt.Errorf("%s is not whole epoch milliseconds", strconv.FormatFloat(ms, 'f', -1, 64))
		}
		return features.Timestamp(int64(ms)), features.CheckTime(int64(ms))
	case features.TypeNull:
		return features.Null, errors.New("no timestamp")
	}
	return features.Null, fmt.Errorf("a %s is not a timestamp", v.Type())
}

// decimal parses s if it is a decimal number with a fraction or an
// exponent (1710032400000.0, 1.7100324e12): not NaN, Inf nor hexadecimal.
// A fraction below float64's precision is lost, as in such a column.
func decimal(s string) (float64, bool) {
	if strings.ContainsFunc(s, func(r rune) bool { return !strings.ContainsRune("0123456789+-.eE", r) }) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// readParquet reads a Parquet spine a row group at a time, keeping the
// shard's rows if sh is not nil.
func readParquet(path string, sh *spineShard) (*spine, error) {
	r, err := offline.OpenFile(path)
	if err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	defer r.Close()
	s := &spine{cols: r.Columns(), sharded: sh != nil}
	types := columnTypes(s.cols)
	if sh != nil {
		sh.locate(s.cols)
		types = append(types, features.TypeInt) // SpineRowColumn
	}
	var kept [][]features.Value
	for g := range r.RowGroups() {
		rows, err := r.RowGroup(g)
		if err != nil {
			return nil, &SpineError{File: path, Err: err}
		}
		for _, row := range rows {
			n := s.spineRows
			s.spineRows++
			switch {
			case sh == nil:
			case sh.keeps(func(j int) features.Value { return row[j] }):
				// A copy: a row group's rows share one array, which a
				// row kept would keep whole.
				row = append(slices.Clip(row), features.Int(int64(n)))
			default:
				continue
			}
			kept = append(kept, row)
		}
	}
	s.table = newTable(len(kept), types)
	for i, row := range kept {
		for c, v := range row {
			s.table.set(i, c, v)
		}
	}
	return s, nil
}

// readCSV reads a CSV spine with a header, in two passes: the first finds
// the columns' types and counts the rows, the second parses the cells into
// a table of that size, so that no cell is held as text. Join keys take
// their key's type; every other column is an int, a float, a bool or a
// string, whichever all its values parse as with every digit (typeGuess);
// empty cells are null. The rows are
// split into a chunk per core, read at once in both passes.
//
// Given a shard, both passes hash each record's join keys, and the table
// holds the shard's rows alone.
func readCSV(path string, keys map[string]features.Type, sh *spineShard) (*spine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	defer f.Close()
	// The byte-order mark spreadsheets write goes before the header, which
	// may be quoted.
	bom, head := int64(0), make([]byte, 3)
	if _, err := io.ReadFull(f, head); err == nil && string(head) == "\ufeff" {
		bom = 3
	}
	if _, err := f.Seek(bom, io.SeekStart); err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	r := newCSVReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, &SpineError{File: path, Row: 1, Err: fmt.Errorf("no header: %w", err)}
	}
	s := &spine{cols: make([]offline.Column, len(header))}
	seen := map[string]bool{}
	for j, h := range header {
		if h == "" || seen[h] {
			return nil, &SpineError{File: path, Row: 1, Err: fmt.Errorf("column %d: empty or repeated name %q", j+1, h)}
		}
		seen[h] = true
		s.cols[j] = offline.Column{Name: h}
	}
	chunks, err := splitCSV(f, bom+r.InputOffset(), runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	for _, c := range chunks {
		c.fields = len(header)
	}
	// keeps reports whether a record is the shard's, its join keys parsed
	// as their types; one whose keys do not parse is kept, for the second
	// pass to report.
	keeps := func(*spineShard, []string) bool { return true }
	if sh != nil {
		s.sharded = true
		sh.locate(s.cols)
		keeps = func(sh *spineShard, rec []string) bool {
			ok := true
			kept := sh.keeps(func(j int) features.Value {
				v, err := parseCell(rec[j], keys[s.cols[j].Name])
				ok = ok && err == nil
				return v
			})
			return kept || !ok
		}
	}

	guesses := make([][]typeGuess, len(chunks))
	kept := make([]int, len(chunks))
	err = eachChunk(path, chunks, func(k int, c *csvChunk) error {
		guesses[k] = make([]typeGuess, len(header))
		sh := sh.clone()
		return c.each(f, func(_ int, rec []string) error {
			// Types from every record, so that every shard has the same.
			for j, cell := range rec {
				guesses[k][j].see(cell)
			}
			if keeps(sh, rec) {
				kept[k]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	rows := 0
	for k, c := range chunks {
		c.first, c.firstKept = s.spineRows, rows
		s.spineRows, rows = s.spineRows+c.rows, rows+kept[k]
	}
	for j, c := range s.cols {
		if t, ok := keys[c.Name]; ok {
			s.cols[j].Type = t
			continue
		}
		var g typeGuess
		for k := range chunks {
			g.merge(guesses[k][j])
		}
		s.cols[j].Type = g.typ()
	}
	types := columnTypes(s.cols)
	if sh != nil {
		types = append(types, features.TypeInt) // SpineRowColumn
	}
	s.table = newTable(rows, types)
	err = eachChunk(path, chunks, func(k int, c *csvChunk) error {
		counted, r := c.rows, c.firstKept
		sh := sh.clone()
		err := c.each(f, func(i int, rec []string) error {
			switch {
			case i >= counted:
				return errFileChanged
			case !keeps(sh, rec):
				return nil
			case r == c.firstKept+kept[k]:
				return errFileChanged
			}
			for j, cell := range rec {
				v, err := parseCell(cell, s.cols[j].Type)
				if err != nil {
					return fmt.Errorf("column %q: %w", s.cols[j].Name, err)
				}
				s.table.set(r, j, v)
			}
			if sh != nil {
				s.table.set(r, len(s.cols), features.Int(int64(c.first+i)))
			}
			r++
			return nil
		})
		if err == nil && (c.rows != counted || r != c.firstKept+kept[k]) {
			err = &chunkError{err: errFileChanged}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

var errFileChanged = errors.New("the file changed while it was read")

// csvChunk is a run of a CSV file's records: its bytes from start to end,
// with lines line breaks before it.
type csvChunk struct {
	start, end int64
	lines      int // line breaks before start, to number lines as the file does
	fields     int // per record
	rows       int // records read by each
	first      int // its first record's index among the file's, once known
	firstKept  int // its first kept record's row in the spine's table, once known
}

// chunkError is a chunk's first error, at a row counted from the chunk's
// first (1).
type chunkError struct {
	row int
	err error
}

func (e *chunkError) Error() string { return e.err.Error() }

// eachChunk calls fn on every chunk of the file at path at once, and
// returns the first error in the file's order as a SpineError naming the
// file's row. Only that one counts: a chunk starts at a record only if the
// chunks before it read without error.
func eachChunk(path string, chunks []*csvChunk, fn func(k int, c *csvChunk) error) error {
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	for k, c := range chunks {
		wg.Go(func() { errs[k] = fn(k, c) })
	}
	wg.Wait()
	rows := 1 // the header's
	for k, err := range errs {
		var ce *chunkError
		switch {
		case err == nil:
			rows += chunks[k].rows
			continue
		case !errors.As(err, &ce):
			return &SpineError{File: path, Err: err}
		case errors.Is(ce.err, errFileChanged):
			return &SpineError{File: path, Err: ce.err}
		}
		return &SpineError{File: path, Row: rows + ce.row, Err: ce.err}
	}
	return nil
}

// each calls fn with each record of the chunk and its index in the chunk,
// counting them in c.rows; an error is a *chunkError, its row counted from
// the chunk's start.
func (c *csvChunk) each(f *os.File, fn func(i int, rec []string) error) error {
	r := newCSVReader(io.NewSectionReader(f, c.start, c.end-c.start))
	r.ReuseRecord = true
	r.FieldsPerRecord = c.fields
	for c.rows = 0; ; c.rows++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) { // lines as in the whole file
			pe.StartLine += c.lines
			pe.Line += c.lines
		}
		if err == nil {
			err = fn(c.rows, rec)
		}
		if err != nil {
			return &chunkError{row: c.rows + 1, err: err}
		}
	}
}

// maxRecordBytes bounds a CSV record: encoding/csv holds a record whole,
// and a file without line breaks would be one record.
const maxRecordBytes = 16 << 20

// csvReader is a csv.Reader whose Read fails once the record it reads
// passes maxRecordBytes.
type csvReader struct {
	*csv.Reader
	in *recordBound
}

// recordBound is a csvReader's input: it fails a read more than
// maxRecordBytes past the end of the last record read.
type recordBound struct {
	r          io.Reader
	read, last int64 // bytes read; the last record's end
}

var errRecordTooLong = fmt.Errorf("a record of more than %d MiB: is the file CSV, a line break after each row?", maxRecordBytes>>20)

func (b *recordBound) Read(p []byte) (int, error) {
	if b.read-b.last > maxRecordBytes {
		return 0, errRecordTooLong
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

func newCSVReader(r io.Reader) *csvReader {
	in := &recordBound{r: r}
	return &csvReader{Reader: csv.NewReader(in), in: in}
}

func (r *csvReader) Read() ([]string, error) {
	rec, err := r.Reader.Read()
	r.in.last = r.Reader.InputOffset()
	return rec, err
}

// splitCSV splits the records of f from offset start to its end into up to
// n chunks of about the same size, each ending at a line break outside
// quotes: one after an even number of quotes, since a quote inside a
// quoted field is doubled. A file whose quoting is wrong fails in the
// chunk where it goes wrong, before the next chunk is relied on.
func splitCSV(f *os.File, start int64, n int) ([]*csvChunk, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	buf := make([]byte, max(start, 1<<20))
	if _, err := f.ReadAt(buf[:start], 0); err != nil {
		return nil, err
	}
	quote, nl := []byte{'"'}, []byte{'\n'}
	lines, quotes := bytes.Count(buf[:start], nl), 0 // line breaks from the file's start, quotes from start
	chunks := []*csvChunk{{start: start, end: size, lines: lines}}
	step := (size - start) / int64(n)
	if step < 256<<10 {
		return chunks, nil // too small to be worth it
	}
	next := start + step // where the next chunk may start
	for pos := start; pos < size && len(chunks) < n; {
		m, err := f.ReadAt(buf, pos)
		if m == 0 {
			return nil, err
		}
		for b := buf[:m]; len(b) > 0 && len(chunks) < n; {
			if skip := next - pos; skip > 0 { // before where the chunk may end: counted at once
				k := int(min(skip, int64(len(b))))
				quotes += bytes.Count(b[:k], quote)
				lines += bytes.Count(b[:k], nl)
				b, pos = b[k:], pos+int64(k)
				continue
			}
			c := b[0]
			b, pos = b[1:], pos+1
			switch c {
			case '"':
				quotes++
			case '\n':
				lines++
				if quotes%2 == 0 {
					chunks[len(chunks)-1].end = pos
					chunks = append(chunks, &csvChunk{start: pos, end: size, lines: lines})
					next = pos + step
				}
			}
		}
	}
	return chunks, nil
}

// typeGuess is what a column's cells seen so far all parse as.
type typeGuess struct{ notInt, notFloat, notBool, any bool }

// see takes a cell. An int is one as Go writes it, so that the dataset's
// column reads as the spine's; digits that are not (a code with a leading
// zero, an id too long for an int64) make the column a string column, not
// a float one that would change them. A float is a number a double holds
// with every digit (keepsDigits): one it does not, an int of 17 digits
// beside a 1.5 say, makes the column a string column too. A bool is true
// or false as pandas, Spark or DuckDB write it.
func (g *typeGuess) see(c string) {
	if c == "" {
		return
	}
	g.any = true
	if !g.notBool {
		if _, ok := parseBool(c); ok {
			g.notInt, g.notFloat = true, true
			return
		}
		g.notBool = true
	}
	if g.notInt && g.notFloat {
		return
	}
	var buf [24]byte
	if i, err := strconv.ParseInt(c, 10, 64); err == nil && string(strconv.AppendInt(buf[:0], i, 10)) == c {
		if !g.notFloat && len(c) > 15 && !keepsDigits(c, float64(i)) {
			g.notFloat = true
		}
		return
	}
	g.notInt = true
	if strings.TrimLeft(strings.TrimPrefix(c, "-"), "0123456789") == "" {
		g.notFloat = true
	}
	if !g.notFloat {
		if f, err := strconv.ParseFloat(c, 64); err != nil || math.IsInf(f, 0) || math.IsNaN(f) || !keepsDigits(c, f) {
			g.notFloat = true
		}
	}
}

// keepsDigits reports whether f, the double cell c parses as, keeps every
// digit of c: whether its shortest form, as a dataset's CSV writes it and
// readers show it, is the number c is. A cell of at most 15 significant
// digits keeps them, unless it is beyond a double's normal range (1e-400,
// 4.9e-324); so does a cell written in that shortest form, as Go and
// Python (pandas) write doubles; others are compared exactly.
func keepsDigits(c string, f float64) bool {
	if n := significant(c); n <= 15 && (f == 0 && n == 0 || math.Abs(f) >= 0x1p-1022) {
		return true
	}
	var buf [32]byte
	if string(strconv.AppendFloat(buf[:0], f, 'f', -1, 64)) == c || string(strconv.AppendFloat(buf[:0], f, 'g', -1, 64)) == c {
		return true
	}
	var want, got big.Rat
	if _, ok := want.SetString(c); !ok {
		return false
	}
	_, ok := got.SetString(strconv.FormatFloat(f, 'g', -1, 64))
	return ok && want.Cmp(&got) == 0
}

// significant returns the significant digits of a decimal number, from its
// first non-zero digit to its exponent, or more than 15 if c is written
// otherwise (in hex, say).
func significant(c string) int {
	n, leading := 0, true
	for i := range len(c) {
		switch b := c[i]; {
		case b == 'e' || b == 'E':
			return n
		case b == '0' && leading, b == '.', i == 0 && (b == '-' || b == '+'):
		case '0' <= b && b <= '9':
			n, leading = n+1, false
		default:
			return math.MaxInt
		}
	}
	return n
}

// merge takes what another guess saw.
func (g *typeGuess) merge(o typeGuess) {
	g.notInt, g.notFloat, g.any = g.notInt || o.notInt, g.notFloat || o.notFloat, g.any || o.any
	g.notBool = g.notBool || o.notBool
}

func (g *typeGuess) typ() features.Type {
	switch {
	case g.any && !g.notInt:
		return features.TypeInt
	case g.any && !g.notFloat:
		return features.TypeFloat
	case g.any && !g.notBool:
		return features.TypeBool
	}
	return features.TypeString
}

func parseBool(c string) (b, ok bool) {
	switch c {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

func parseCell(c string, t features.Type) (features.Value, error) {
	if c == "" {
		return features.Null, nil
	}
	switch t {
	case features.TypeInt:
		i, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return features.Null, fmt.Errorf("%q is not an integer", c)
		}
		return features.Int(i), nil
	case features.TypeFloat:
		f, err := strconv.ParseFloat(c, 64)
		if err != nil {
			return features.Null, fmt.Errorf("%q is not a number", c)
		}
		return features.Float(f), nil
	case features.TypeBool:
		b, ok := parseBool(c)
		if !ok {
			return features.Null, fmt.Errorf("%q is not true or false", c)
		}
		return features.Bool(b), nil
	}
	if !utf8.ValidString(c) {
		c = features.ValidUTF8([]byte(c)) // as ingest decodes an event's strings: the join keys must match
	}
	return features.String(c), nil
}

func index(cols []offline.Column, name string) int {
	for j, c := range cols {
		if c.Name == name {
			return j
		}
	}
	return -1
}

// names lists columns for an error: at most 20, each name cut to 64 bytes,
// so that a header line of megabytes stays out of it.
func names(cols []offline.Column) string {
	const most, long = 20, 64
	var ns []string
	for i, c := range cols {
		if i == most {
			ns = append(ns, fmt.Sprintf("and %d more", len(cols)-most))
			break
		}
		ns = append(ns, clip(c.Name, long))
	}
	return strings.Join(ns, ", ")
}

// clip cuts s to n bytes, marking the cut, for an error.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
