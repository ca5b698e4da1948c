package offline

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"

	"github.com/quiver-ml/quiver/features"
)

// Writer writes rows of Columns to one Parquet file, with the types and
// compression of the logs: what training sets are written with. Rows are
// written as they come, in row groups.
type Writer struct {
	pw       *parquet.GenericWriter[any]
	cols     []Column
	required []bool
}

// NewWriter starts a Parquet file on w, with meta as its key/value metadata.
func NewWriter(w io.Writer, cols []Column, meta map[string]string) (*Writer, error) {
	if err := ValidateColumns(cols); err != nil {
		return nil, fmt.Errorf("parquet writer: %w", err)
	}
	opts := []parquet.WriterOption{newSchema(cols), parquet.Compression(logCodec)}
	for k, v := range meta {
		opts = append(opts, parquet.KeyValueMetadata(k, v))
	}
	pw := &Writer{pw: parquet.NewGenericWriter[any](w, opts...), cols: cols, required: make([]bool, len(cols))}
	for j, c := range cols {
		pw.required[j] = c.Stored.Required
	}
	return pw, nil
}

// Write writes rows, each with one value per column (an int is accepted in a
// float column), as one row group.
func (w *Writer) Write(rows [][]features.Value) error {
	g := w.Group()
	if err := g.Write(rows); err != nil {
		return err
	}
	return g.Commit()
}

// Group is a row group encoded apart from the file, so that several can be
// encoded at once, one goroutine each.
type Group struct {
	w    *Writer
	rg   *parquet.ConcurrentRowGroupWriter
	vals []parquet.Value
	idx  []int
}

// Group starts a row group.
func (w *Writer) Group() *Group { return &Group{w: w, rg: w.pw.BeginRowGroup()} }

// Write encodes rows, each with one value per column (an int is accepted in
// a float column), into the group.
func (g *Group) Write(rows [][]features.Value) error {
	cols := g.w.cols
	for i, row := range rows {
		if len(row) != len(cols) {
			return fmt.Errorf("row %d: %d values for %d columns", i, len(row), len(cols))
		}
		for j, v := range row {
			if err := checkValue(cols[j], v, g.w.required[j]); err != nil {
				return fmt.Errorf("row %d column %q: %w", i, cols[j].Name, err)
			}
		}
	}
	g.idx = g.idx[:0]
	for i := range rows {
		g.idx = append(g.idx, i)
	}
	var err error
	if g.vals, err = encodeRows(g.rg, cols, rows, g.idx, g.vals); err != nil {
		return err
	}
	return g.rg.Flush()
}

// Commit appends the group to the file, after the groups committed before
// it; the group is then empty, to be written again. Groups are committed
// one at a time.
func (g *Group) Commit() error {
	_, err := g.rg.Commit()
	return err
}

// SetMeta sets a key/value metadata pair, before Close.
func (w *Writer) SetMeta(key, value string) { w.pw.SetKeyValueMetadata(key, value) }

// Close writes the footer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.pw == nil {
		return errors.New("parquet writer: closed twice")
	}
	err := w.pw.Close()
	w.pw = nil
	return err
}
