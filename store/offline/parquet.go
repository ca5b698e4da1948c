package offline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"

	"github.com/quiver-ml/quiver/features"
)

// The columns every event-log file carries besides the source's schema. They
// are REQUIRED (never null); every other column is OPTIONAL. A feature log has
// ColEventTime only.
const (
	ColEventTime = "_event_time" // TIMESTAMP(MILLIS, UTC)
	ColTopic     = "_topic"      // string
	ColPartition = "_partition"  // INT32
	ColOffset    = "_offset"     // INT64
)

// EventColumns returns the columns of src's event log: its schema's fields,
// then ColEventTime, ColTopic, ColPartition and ColOffset.
func EventColumns(src *features.Source) []Column {
	cols := make([]Column, 0, len(src.Schema)+4)
	for _, f := range src.Schema {
		cols = append(cols, Column{Name: f.Name, Type: f.Type})
	}
	return append(cols, Column{Name: ColEventTime, Type: features.TypeTimestamp}, Column{Name: ColTopic, Type: features.TypeString},
		Column{Name: ColPartition, Type: features.TypeInt}, Column{Name: ColOffset, Type: features.TypeInt})
}

// Column is one column of a Parquet file. Its Parquet type follows Type:
// TypeString is BYTE_ARRAY (STRING), TypeInt INT64, TypeFloat DOUBLE, TypeBool
// BOOLEAN and TypeTimestamp INT64 TIMESTAMP(isAdjustedToUTC=true, MILLIS),
// each OPTIONAL.
//
// A column stored otherwise carries how (Stored) and is written so: one read
// from another writer's file, and a log's reserved columns (ColPartition is
// a REQUIRED INT32, say).
type Column struct {
	Name   string
	Type   features.Type
	Stored Stored // the zero Stored: the Type's own
}

// reservedColumns are the columns of the logs' own: their types, and how
// every log file stores them (REQUIRED; _partition as INT32).
var reservedColumns = map[string]Column{
	ColEventTime: {Type: features.TypeTimestamp, Stored: storedOf(parquet.Required(parquet.Timestamp(parquet.Millisecond)))},
	ColTopic:     {Type: features.TypeString, Stored: storedOf(parquet.Required(parquet.String()))},
	ColPartition: {Type: features.TypeInt, Stored: storedOf(parquet.Required(parquet.Int(32)))},
	ColOffset:    {Type: features.TypeInt, Stored: storedOf(parquet.Required(parquet.Int(64)))},
}

// logLayout returns a log's columns with its reserved columns stored as the
// logs store them. Other files (training sets) give these names no meaning.
func logLayout(cols []Column) []Column {
	out := slices.Clone(cols)
	for i, c := range out {
		if r, ok := reservedColumns[c.Name]; ok && c.Stored == (Stored{}) {
			out[i].Stored = r.Stored
		}
	}
	return out
}

// ValidateColumns checks that columns can be written: names (not empty,
// UTF-8 without a comma or NUL, distinct) and types. Problems are reported
// together.
func ValidateColumns(cols []Column) error {
	if len(cols) == 0 {
		return errors.New("no columns")
	}
	var errs []error
	seen := make(map[string]bool, len(cols))
	for i, c := range cols {
		switch {
		case c.Name == "":
			errs = append(errs, fmt.Errorf("column %d: empty name", i))
		case strings.ContainsAny(c.Name, ",\x00"):
			errs = append(errs, fmt.Errorf("column %q: name must not contain a comma or NUL", c.Name))
		case !utf8.ValidString(c.Name):
			errs = append(errs, fmt.Errorf("column %q: name is not UTF-8", c.Name))
		case seen[c.Name]:
			errs = append(errs, fmt.Errorf("column %q: duplicate name", c.Name))
		}
		seen[c.Name] = true
		if (c.Type <= features.TypeNull || c.Type > features.TypeTimestamp) && !(c.Type == features.TypeNull && c.Stored.Logical == logicalNull) {
			errs = append(errs, fmt.Errorf("column %q: invalid type %s", c.Name, c.Type))
		}
	}
	return errors.Join(errs...)
}

// leafNode returns the Parquet node of a column.
func leafNode(c Column) parquet.Node {
	if c.Stored != (Stored{}) {
		return c.Stored.node()
	}
	var n parquet.Node
	switch c.Type {
	case features.TypeString:
		// Ids and categories repeat: a dictionary stores each once, and
		// readers convert each once.
		n = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
	case features.TypeInt:
		n = parquet.Int(64)
	case features.TypeFloat:
		n = parquet.Leaf(parquet.DoubleType)
	case features.TypeBool:
		n = parquet.Leaf(parquet.BooleanType)
	case features.TypeTimestamp:
		n = parquet.Timestamp(parquet.Millisecond) // isAdjustedToUTC=true
	}
	return parquet.Optional(n)
}

// newSchema returns the Parquet schema of cols, in their order. It assumes
// ValidateColumns(cols) passed.
func newSchema(cols []Column) *parquet.Schema {
	fields := make([]parquet.Field, len(cols))
	for i, c := range cols {
		// A one-field Group yields a parquet.Field with the library's own
		// name and reflection behaviour; only the order is ours.
		fields[i] = parquet.Group{c.Name: leafNode(c)}.Fields()[0]
	}
	return parquet.NewSchema("quiver", orderedGroup(fields))
}

// orderedGroup is a Parquet group node whose fields keep the order they were
// given in. parquet.Group is a map and orders its fields by name, which would
// put a log's columns in alphabetical order rather than the declared one.
type orderedGroup []parquet.Field

var _ parquet.Node = orderedGroup(nil)

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return schemaString(g) }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Fields() []parquet.Field     { return g }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }

// GoType returns a struct type with one field per column, tagged with the
// column's name, as parquet.Group does.
func (g orderedGroup) GoType() reflect.Type {
	fields := make([]reflect.StructField, len(g))
	used := make(map[string]bool, len(g))
	for i, f := range g {
		name := goFieldName(f.Name())
		for used[name] {
			name += "_"
		}
		used[name] = true
		fields[i] = reflect.StructField{
			Name: name,
			Type: f.GoType(),
			Tag:  reflect.StructTag(`parquet:` + strconv.Quote(f.Name())),
		}
	}
	return reflect.StructOf(fields)
}

// goFieldName turns a column name into an exported Go identifier.
func goFieldName(s string) string {
	var b strings.Builder
	b.WriteByte('X')
	for _, r := range s {
		if r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// unsafeBytes returns the bytes of s without copying; parquet-go copies values
// into its buffers and never writes to them.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func schemaString(n parquet.Node) string {
	var b strings.Builder
	_ = parquet.PrintSchema(&b, "", n)
	return b.String()
}

// encodeRows writes rows idx of rows to w, column by column. vals is scratch
// space, returned grown for reuse.
func encodeRows(w interface {
	ColumnWriters() []*parquet.ColumnWriter
}, cols []Column, rows [][]features.Value, idx []int, vals []parquet.Value) ([]parquet.Value, error) {
	if cap(vals) < len(idx) {
		vals = make([]parquet.Value, len(idx))
	}
	vals = vals[:len(idx)]
	defer clear(vals) // drop references to strings
	writers := w.ColumnWriters()
	for j, c := range cols {
		def := 1 // definition level of a value in an optional column
		if c.Stored.Required {
			def = 0
		}
		null := parquet.Value{}.Level(0, 0, j)
		// One loop per type, so that the switch is not made per value.
		switch {
		case c.Stored != (Stored{}):
			for i, r := range idx {
				if v := &rows[r][j]; v.IsNull() {
					vals[i] = null
				} else {
					vals[i] = c.Stored.value(*v).Level(0, def, j)
				}
			}
		case c.Type == features.TypeString:
			for i, r := range idx {
				if v := &rows[r][j]; v.IsNull() {
					vals[i] = null
				} else {
					vals[i] = parquet.ByteArrayValue(unsafeBytes(v.Str())).Level(0, def, j)
				}
			}
		case c.Type == features.TypeInt || c.Type == features.TypeTimestamp:
			for i, r := range idx {
				if v := &rows[r][j]; v.IsNull() {
					vals[i] = null
				} else {
					vals[i] = parquet.Int64Value(v.Int()).Level(0, def, j)
				}
			}
		case c.Type == features.TypeFloat:
			for i, r := range idx {
				if v := &rows[r][j]; v.IsNull() {
					vals[i] = null
				} else {
					vals[i] = parquet.DoubleValue(v.Float()).Level(0, def, j)
				}
			}
		case c.Type == features.TypeBool:
			for i, r := range idx {
				if v := &rows[r][j]; v.IsNull() {
					vals[i] = null
				} else {
					vals[i] = parquet.BooleanValue(v.Bool()).Level(0, def, j)
				}
			}
		default:
			return vals, fmt.Errorf("column %q: invalid type %s", c.Name, c.Type)
		}
		if _, err := writers[j].WriteRowValues(vals); err != nil {
			return vals, fmt.Errorf("column %q: %w", c.Name, err)
		}
	}
	return vals, nil
}

// checkValue reports why v cannot be stored in column c, or nil. An int is
// accepted in a float column.
func checkValue(c Column, v features.Value, required bool) error {
	if v.IsNull() {
		if required {
			return errors.New("null in a required column")
		}
		return nil
	}
	t := v.Type()
	if t != c.Type && !(c.Type == features.TypeFloat && t == features.TypeInt) {
		return fmt.Errorf("%s value in a %s column", t, c.Type)
	}
	switch s := c.Stored; {
	case s.Logical == logicalDecimal:
		_, err := s.decimalOf(v)
		return err
	case s.Logical == logicalUUID:
		_, err := uuidBytes(v.Str())
		return err
	case s.Logical == logicalInt && !s.Signed && s.BitWidth == 64 && v.Int() < 0:
		return fmt.Errorf("%d in a column of unsigned ints", v.Int())
	}
	if s := c.Stored; s.Kind == parquet.Int32 && s.Logical != logicalDate {
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		if s.Logical == logicalInt && !s.Signed {
			lo, hi = 0, math.MaxUint32
		}
		if v.Int() < lo || v.Int() > hi {
			return fmt.Errorf("%d out of the column's 32-bit range", v.Int())
		}
	}
	return nil
}

// ReadFile reads a local Parquet file with a flat schema: the columns, every
// row in file order and the file's key/value metadata. Besides the types
// this package writes it accepts, for backfill inputs from other tools: INT32
// and unsigned integers (int; a UINT64 above the int range is refused),
// FLOAT (float), TIMESTAMP in any unit (converted to milliseconds, rounding
// down), DATE (midnight UTC), INT96 timestamps, DECIMAL (decimalType),
// UUID (its text) and the NULL logical type (a column of nulls only, of
// features.TypeNull: what Arrow and pandas write for a column of None). A column stored otherwise than this package would store
// it carries how (Column.Stored), so that it is written back the same way.
func ReadFile(path string) (cols []Column, rows [][]features.Value, meta map[string]string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	cols, data, meta, err := readParquet(f, st.Size(), nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return cols, rowsOf(data), meta, nil
}

// ColumnValues is one column of a file's rows. A string column's rows share
// their strings, as a dictionary-encoded column's do in the file: Strings
// holds them (one string may be there more than once, from row groups of
// their own), and Index a row's place in it, or -1 for a null. A column of
// another type (ints, floats, bools, timestamps) has a number per row: its
// value's bits (features.Value.Bits), and whether it is null if any is.
type ColumnValues struct {
	Type    features.Type
	Bits    []uint64         // per row, if not a string column
	Nulls   []bool           // per row, if not a string column and some row is null; else nil
	Strings []features.Value // a string column's
	Index   []int32          // a string column's, per row
	// Nanos holds, per row, a timestamp's nanoseconds past its millisecond
	// (features.Value.Nano), in a column stored in finer units; else nil.
	Nanos []uint32
}

// Len returns the number of rows.
func (c *ColumnValues) Len() int {
	if c.Index != nil {
		return len(c.Index)
	}
	return len(c.Bits)
}

// At returns row r's value.
func (c *ColumnValues) At(r int) features.Value {
	if c.Index == nil {
		if c.Nulls != nil && c.Nulls[r] {
			return features.Null
		}
		if c.Nanos != nil {
			return features.TimestampNano(int64(c.Bits[r]), c.Nanos[r])
		}
		return features.FromBits(c.Type, c.Bits[r])
	}
	if i := c.Index[r]; i >= 0 {
		return c.Strings[i]
	}
	return features.Null
}

// slice returns rows lo to hi (excluded) of the column.
func (c ColumnValues) slice(lo, hi int) ColumnValues {
	if c.Index != nil {
		c.Index = c.Index[lo:hi]
		return c
	}
	c.Bits = c.Bits[lo:hi]
	if c.Nulls != nil {
		c.Nulls = c.Nulls[lo:hi]
	}
	if c.Nanos != nil {
		c.Nanos = c.Nanos[lo:hi]
	}
	return c
}

// add appends a row of a column that is not of strings.
func (c *ColumnValues) add(v features.Value) {
	if v.IsNull() {
		c.addNull()
		return
	}
	c.Bits = append(c.Bits, v.Bits())
	if c.Nulls != nil {
		c.Nulls = append(c.Nulls, false)
	}
	if c.Nanos != nil {
		c.Nanos = append(c.Nanos, v.Nano())
	}
}

// addNull appends a null row of a column that is not of strings.
func (c *ColumnValues) addNull() {
	if c.Nulls == nil {
		c.Nulls = make([]bool, len(c.Bits), cap(c.Bits))
	}
	c.Bits = append(c.Bits, 0)
	c.Nulls = append(c.Nulls, true)
	if c.Nanos != nil {
		c.Nanos = append(c.Nanos, 0)
	}
}

// rowsOf turns columns into rows, sharing one allocation.
func rowsOf(data []ColumnValues) [][]features.Value {
	if len(data) == 0 {
		return nil
	}
	n, w := data[0].Len(), len(data)
	slab := make([]features.Value, n*w)
	rows := make([][]features.Value, n)
	for r := range rows {
		rows[r] = slab[r*w : (r+1)*w : (r+1)*w]
	}
	for c := range data {
		for r := range rows {
			rows[r][c] = data[c].At(r)
		}
	}
	return rows
}

// readParquet reads a file's columns named in only, or all of them if
// only is empty.
func readParquet(r io.ReaderAt, size int64, only []string) (cols []Column, data []ColumnValues, meta map[string]string, err error) {
	pf, err := openParquet(r, size, only)
	if err != nil {
		return nil, nil, nil, err
	}
	data = pf.newData(min(pf.f.NumRows(), 1<<20)) // as the footer says, within reason: it may lie
	for g := range pf.f.RowGroups() {
		if err := pf.readGroup(g, data); err != nil {
			return nil, nil, nil, err
		}
	}
	for i := range data {
		if data[i].Len() != int(pf.f.NumRows()) {
			return nil, nil, nil, fmt.Errorf("column %s: %d values for %d rows", pf.cols[i].Name, data[i].Len(), pf.f.NumRows())
		}
	}
	return pf.cols, data, pf.meta, nil
}

// parquetFile is a Parquet file with a flat schema, open to read a row
// group at a time.
type parquetFile struct {
	f      *parquet.File
	cols   []Column // the columns read
	leaves []leaf   // by file column
	at     []int    // by file column, its place in cols, or -1
	meta   map[string]string
	sc     readScratch
}

// openParquet opens a file to read its columns named in only, or all of
// them if only is empty.
func openParquet(r io.ReaderAt, size int64, only []string) (pf *parquetFile, err error) {
	if err := checkFooter(r, size); err != nil {
		return nil, err
	}
	// The file may come from anywhere (a spine): parquet-go panics on some
	// malformed files rather than failing.
	defer func() {
		if p := recover(); p != nil {
			pf, err = nil, fmt.Errorf("not a valid Parquet file: %v", p)
		}
	}()
	f, err := parquet.OpenFile(r, size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, err
	}
	cols, leaves, err := fileColumns(f.Schema())
	if err != nil {
		return nil, err
	}
	at := make([]int, len(cols))
	for c := range at {
		at[c] = c
	}
	if len(only) > 0 {
		n := 0
		for c, col := range cols {
			at[c] = -1
			if slices.Contains(only, col.Name) {
				at[c], cols[n] = n, col
				n++
			}
		}
		cols = cols[:n]
	}
	for _, rg := range f.Metadata().RowGroups {
		for _, cc := range rg.Columns {
			// parquet-go v0.32 mis-decodes some LZ4 pages (parquet-go issue
			// 608) and loops without end on corrupt ones.
			if c := cc.MetaData.Codec; c == format.Lz4 || c == format.Lz4Raw {
				return nil, fmt.Errorf("column %s: %s compression is not supported: write the file with SNAPPY or ZSTD", strings.Join(cc.MetaData.PathInSchema, "."), c)
			}
		}
	}
	meta := make(map[string]string, len(f.Metadata().KeyValueMetadata))
	for _, kv := range f.Metadata().KeyValueMetadata {
		meta[kv.Key] = kv.Value
	}
	return &parquetFile{f: f, cols: cols, leaves: leaves, at: at, meta: meta, sc: readScratch{values: make([]parquet.Value, 1024)}}, nil
}

// newData returns empty columns for n rows of the columns read.
func (pf *parquetFile) newData(n int64) []ColumnValues {
	data := make([]ColumnValues, len(pf.cols))
	for i, c := range pf.cols {
		data[i].Type = c.Type
		switch {
		case c.Type == features.TypeString:
			data[i].Index = make([]int32, 0, n)
		case c.Type == features.TypeTimestamp && c.Stored.PerMilli > 1 || c.Stored.Kind == parquet.Int96:
			data[i].Nanos = make([]uint32, 0, n)
			fallthrough
		default:
			data[i].Bits = make([]uint64, 0, n)
		}
	}
	return data
}

// readGroup appends row group g's rows to data.
func (pf *parquetFile) readGroup(g int, data []ColumnValues) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("not a valid Parquet file: %v", p)
		}
	}()
	var before int64 // the rows of the groups before g
	for _, rg := range pf.f.RowGroups()[:g] {
		before += rg.NumRows()
	}
	rg := pf.f.RowGroups()[g]
	for _, cc := range rg.ColumnChunks() {
		c := cc.Column()
		if c < 0 || c >= len(pf.at) || pf.at[c] < 0 {
			continue
		}
		if err := readColumn(cc, &data[pf.at[c]], int(rg.NumRows()), before, &pf.leaves[c], &pf.sc); err != nil {
			return fmt.Errorf("column %s: %w", pf.cols[pf.at[c]].Name, err)
		}
	}
	return nil
}

// rowGroup reads row group g's rows into columns of their own.
func (pf *parquetFile) rowGroup(g int) ([]ColumnValues, error) {
	n := pf.f.RowGroups()[g].NumRows()
	data := pf.newData(min(n, 1<<20))
	if err := pf.readGroup(g, data); err != nil {
		return nil, err
	}
	for i := range data {
		if data[i].Len() != int(n) {
			return nil, fmt.Errorf("column %s: %d values for %d rows", pf.cols[i].Name, data[i].Len(), n)
		}
	}
	return data, nil
}

// FileReader reads a local Parquet file a row group at a time, as ReadFile
// reads it whole: for files too large to hold.
type FileReader struct {
	f    *os.File
	pf   *parquetFile
	path string
}

// OpenFile opens a local Parquet file to read its row groups: the columns
// named only, or all of them.
func OpenFile(path string, only ...string) (*FileReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil {
		var pf *parquetFile
		if pf, err = openParquet(f, st.Size(), only); err == nil {
			return &FileReader{f: f, pf: pf, path: path}, nil
		}
	}
	f.Close()
	return nil, fmt.Errorf("read %s: %w", path, err)
}

// Columns returns the file's columns.
func (r *FileReader) Columns() []Column { return r.pf.cols }

// Meta returns the file's key/value metadata.
func (r *FileReader) Meta() map[string]string { return r.pf.meta }

// NumRows returns the rows the file's footer counts.
func (r *FileReader) NumRows() int64 { return r.pf.f.NumRows() }

// DataBytes returns the bytes of the file's values uncompressed, as its
// footer counts them.
func (r *FileReader) DataBytes() int64 {
	var n int64
	for _, g := range r.pf.f.Metadata().RowGroups {
		n += g.TotalByteSize
	}
	return n
}

// RowGroups returns the number of row groups.
func (r *FileReader) RowGroups() int { return len(r.pf.f.RowGroups()) }

// RowGroup reads row group g's rows.
func (r *FileReader) RowGroup(g int) ([][]features.Value, error) {
	data, err := r.pf.rowGroup(g)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	return rowsOf(data), nil
}

// Close closes the file.
func (r *FileReader) Close() error { return r.f.Close() }

// checkFooter checks that a Parquet file's footer fits in the file, before
// parquet-go allocates what its length says.
func checkFooter(r io.ReaderAt, size int64) error {
	var tail [8]byte
	if size < 12 { // "PAR1", the footer, its length, "PAR1"
		return errors.New("not a Parquet file: too short")
	}
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if string(tail[4:]) != "PAR1" {
		return errors.New("not a Parquet file: no PAR1 at its end")
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-12 {
		return fmt.Errorf("not a valid Parquet file: a footer of %d bytes in %d", n, size)
	}
	return nil
}

// readScratch is what reading columns reuses.
type readScratch struct {
	values []parquet.Value
	index  []int32
}

// readColumn appends a row group's rows of one column to c: rows values,
// converted as leaf says. before, the file's rows ahead of the group, is
// for an error to name a row of the file.
func readColumn(cc parquet.ColumnChunk, c *ColumnValues, rows int, before int64, leaf *leaf, sc *readScratch) error {
	if leaf.typ == features.TypeNull { // its type says what every value is
		for range rows {
			c.addNull()
		}
		return nil
	}
	pages := cc.Pages()
	defer pages.Close()
	var dict parquet.Dictionary
	var base int32                // where a string column's strings of dict start
	var dictVals []features.Value // another column's values of dict, converted once
	first := c.Len()
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if int64(c.Len()-first)+p.NumValues() > int64(rows) {
			parquet.Release(p)
			return fmt.Errorf("more values than the row group's %d rows", rows)
		}
		if d := p.Dictionary(); d != nil {
			if d != dict {
				dict, base, dictVals = d, int32(len(c.Strings)), dictVals[:0]
				for i := range d.Len() {
					if c.Index != nil {
						c.Strings = append(c.Strings, leaf.value(d.Index(int32(i))))
					} else {
						dictVals = append(dictVals, leaf.value(d.Index(int32(i))))
					}
				}
			}
			err = readIndexed(p, c, d.Len(), base, dictVals, sc)
		} else {
			err = readPlain(p, c, leaf, sc)
		}
		parquet.Release(p)
		if err != nil {
			return err
		}
	}
	if c.Len()-first != rows {
		return fmt.Errorf("%d values for the row group's %d rows", c.Len()-first, rows)
	}
	return leaf.check(c, first, before)
}

// readIndexed appends the rows of a page of indexes into a dictionary of n
// values to c: a string column's as places in c.Strings from base, another
// column's as their values in dictVals. Each value is converted once per
// dictionary, not once per row.
func readIndexed(p parquet.Page, c *ColumnValues, n int, base int32, dictVals []features.Value, sc *readScratch) error {
	data := p.Data()
	idx := data.Int32()
	for _, i := range idx {
		if uint32(i) >= uint32(n) {
			return errors.New("a dictionary index out of range")
		}
	}
	at, err := places(p.DefinitionLevels(), len(idx), sc)
	if err != nil {
		return err
	}
	for _, k := range at {
		switch {
		case c.Index == nil && k < 0:
			c.addNull()
		case c.Index == nil:
			c.add(dictVals[idx[k]])
		case k < 0:
			c.Index = append(c.Index, -1)
		default:
			c.Index = append(c.Index, base+idx[k])
		}
	}
	return nil
}

// places returns, for each row of a page of n values and the definition
// levels defs (nil for a required column), the place of its value among
// the n, or -1 for a null.
func places(defs []byte, n int, sc *readScratch) ([]int32, error) {
	at := sc.index[:0]
	if defs == nil {
		for k := range n {
			at = append(at, int32(k))
		}
		sc.index = at
		return at, nil
	}
	k := int32(0)
	for _, d := range defs {
		if d == 0 { // a flat column: 1 is a value, 0 a null
			at = append(at, -1)
			continue
		}
		at = append(at, k)
		k++
	}
	sc.index = at
	if int(k) != n {
		return nil, fmt.Errorf("%d values where the definition levels say %d", n, k)
	}
	return at, nil
}

// readPlain appends the rows of a page of values to c. Numbers are read
// from the page's arrays; other values one by one.
func readPlain(p parquet.Page, c *ColumnValues, leaf *leaf, sc *readScratch) error {
	if c.Index == nil && leaf.conv != fromDecimal {
		data, defs := p.Data(), p.DefinitionLevels()
		switch p.Type().Kind() {
		case parquet.Int32:
			if leaf.conv == fromUint32 {
				return appendNumbers(c, defs, data.Uint32(), leaf, sc)
			}
			return appendNumbers(c, defs, data.Int32(), leaf, sc)
		case parquet.Int64:
			return appendNumbers(c, defs, data.Int64(), leaf, sc)
		case parquet.Float:
			return appendNumbers(c, defs, data.Float(), leaf, sc)
		case parquet.Double:
			return appendNumbers(c, defs, data.Double(), leaf, sc)
		}
	}
	vr := p.Values()
	for {
		k, err := vr.ReadValues(sc.values)
		for _, v := range sc.values[:k] {
			switch {
			case c.Index == nil && v.IsNull():
				c.addNull()
			case c.Index == nil:
				c.add(leaf.value(v))
			case v.IsNull():
				c.Index = append(c.Index, -1)
			default:
				c.Index = append(c.Index, int32(len(c.Strings)))
				c.Strings = append(c.Strings, leaf.value(v))
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// appendNumbers appends the rows of a page of numbers, vals, to c, a
// column of ints, floats or timestamps as leaf says.
func appendNumbers[T uint32 | int32 | int64 | float32 | float64](c *ColumnValues, defs []byte, vals []T, leaf *leaf, sc *readScratch) error {
	at, err := places(defs, len(vals), sc)
	if err != nil {
		return err
	}
	for _, k := range at {
		if k < 0 {
			c.addNull()
			continue
		}
		x := vals[k]
		if leaf.typ == features.TypeFloat {
			c.Bits = append(c.Bits, math.Float64bits(float64(x)))
		} else {
			c.Bits = append(c.Bits, leaf.bits(int64(x)))
		}
		if c.Nulls != nil {
			c.Nulls = append(c.Nulls, false)
		}
		if c.Nanos != nil {
			c.Nanos = append(c.Nanos, leaf.nano(int64(x)))
		}
	}
	return nil
}

// fileColumns maps a file's schema to columns and how to convert each.
func fileColumns(s *parquet.Schema) ([]Column, []leaf, error) {
	fields := s.Fields()
	cols := make([]Column, len(fields))
	leaves := make([]leaf, len(fields))
	for i, f := range fields {
		if !f.Leaf() || f.Repeated() {
			return nil, nil, fmt.Errorf("column %q: nested and repeated columns are not supported", f.Name())
		}
		l, err := leafOf(f.Type())
		if err != nil {
			return nil, nil, fmt.Errorf("column %q: %w", f.Name(), err)
		}
		cols[i], leaves[i] = Column{Name: f.Name(), Type: l.typ}, l
		if st := storedOf(f); l.typ == features.TypeNull || st != storedOf(leafNode(cols[i])) {
			cols[i].Stored = st
		}
	}
	return cols, leaves, nil
}

const (
	msPerDay    = 24 * 60 * 60 * 1000
	julianEpoch = 2440588 // the Julian day of 1970-01-01, in INT96 timestamps
)

// leaf is how a column's Parquet values become features.Values. An
// integer x of the file (a date's days, a timestamp's units) is the value
// x*mul floor-divided by div.
type leaf struct {
	typ              features.Type
	mul, div         int64
	conv             conversion
	precision, scale int32 // a DECIMAL's
}

// conversion is how a value of the file becomes a leaf's, beyond mul and
// div.
type conversion uint8

const (
	asStored    conversion = iota
	fromUint32             // an INT32 column of unsigned ints
	fromUint64             // an INT64 column of unsigned ints: above the int range, refused
	fromDecimal            // a DECIMAL: see decimalType
	fromUUID               // 16 bytes, read as the UUID's text
)

func leafOf(t parquet.Type) (leaf, error) {
	var lt format.LogicalTypeValue
	if l := t.LogicalType(); l != nil {
		lt = l.Value
	}
	if _, ok := lt.(*format.NullType); ok {
		return leaf{typ: features.TypeNull, mul: 1, div: 1}, nil // every value is null
	}
	if d, ok := lt.(*format.DecimalType); ok {
		if d.Precision < 1 || d.Precision > maxDecimalDigits(t.Kind(), t.Length()) || d.Scale < 0 || d.Scale > d.Precision {
			return leaf{}, fmt.Errorf("unsupported type %s", t)
		}
		return leaf{typ: decimalType(d.Precision, d.Scale), mul: 1, div: 1, conv: fromDecimal, precision: d.Precision, scale: d.Scale}, nil
	}
	l := leaf{mul: 1, div: 1}
	switch t.Kind() {
	case parquet.Boolean:
		l.typ = features.TypeBool
	case parquet.Float, parquet.Double:
		l.typ = features.TypeFloat
	case parquet.ByteArray:
		switch lt.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
			l.typ = features.TypeString
		}
	case parquet.FixedLenByteArray:
		if _, ok := lt.(*format.UUIDType); ok && t.Length() == 16 {
			l.typ, l.conv = features.TypeString, fromUUID
		}
	case parquet.Int32:
		switch lt := lt.(type) {
		case *format.DateType:
			l.typ, l.mul = features.TypeTimestamp, msPerDay
		case nil:
			l.typ = features.TypeInt
		case *format.IntType:
			if lt.BitWidth == 8 || lt.BitWidth == 16 || lt.BitWidth == 32 {
				l.typ = features.TypeInt
				if !lt.IsSigned {
					l.conv = fromUint32
				}
			}
		}
	case parquet.Int64:
		switch lt := lt.(type) {
		case nil:
			l.typ = features.TypeInt
		case *format.IntType:
			if lt.BitWidth == 64 {
				l.typ = features.TypeInt
				if !lt.IsSigned {
					l.conv = fromUint64
				}
			}
		case *format.TimestampType:
			if per := int64(lt.Unit.Value.Duration()); per > 0 && int64(1e6)%per == 0 {
				l.typ, l.div = features.TypeTimestamp, int64(1e6)/per // units per millisecond
			}
		}
	case parquet.Int96:
		l.typ = features.TypeTimestamp
	}
	if l.typ == features.TypeNull {
		return leaf{}, fmt.Errorf("unsupported type %s", t)
	}
	return l, nil
}

// value converts a value of the column that is not null.
func (l *leaf) value(v parquet.Value) features.Value {
	switch l.conv {
	case fromDecimal:
		return decimalValue(unscaled(v), l.scale, l.typ)
	case fromUUID:
		return features.String(uuidText(v.ByteArray()))
	}
	switch v.Kind() {
	case parquet.Boolean:
		return features.Bool(v.Boolean())
	case parquet.Int32:
		if l.conv == fromUint32 {
			return features.FromBits(l.typ, l.bits(int64(v.Uint32())))
		}
		return features.FromBits(l.typ, l.bits(int64(v.Int32())))
	case parquet.Int64:
		if l.div > 1 {
			return features.TimestampNano(int64(l.bits(v.Int64())), l.nano(v.Int64()))
		}
		return features.FromBits(l.typ, l.bits(v.Int64()))
	case parquet.Float:
		return features.Float(float64(v.Float()))
	case parquet.Double:
		return features.Float(v.Double())
	case parquet.Int96:
		return int96Time(v.Int96())
	}
	return features.String(string(v.ByteArray()))
}

// bits returns the bits (features.Value.Bits) of the value of an integer
// of the column.
func (l *leaf) bits(x int64) uint64 {
	if l.div == 1 {
		return uint64(x * l.mul)
	}
	return uint64(floorDiv(x*l.mul, l.div))
}

// nano returns the nanoseconds past its millisecond of an integer of a
// column of timestamps in units finer than a millisecond.
func (l *leaf) nano(x int64) uint32 {
	return uint32((x - floorDiv(x, l.div)*l.div) * (1e6 / l.div))
}

// int96Time converts a legacy INT96 timestamp (nanoseconds of the day, then
// the Julian day) to a timestamp.
func int96Time(x deprecated.Int96) features.Value {
	nanos := int64(x[1])<<32 | int64(x[0])
	ms := floorDiv(nanos, 1e6)
	return features.TimestampNano((int64(x[2])-julianEpoch)*msPerDay+ms, uint32(nanos-ms*1e6))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
