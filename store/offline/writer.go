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
// written as they come, a row group per Write.
type Writer struct {
	pw       *parquet.GenericWriter[any]
	cols     []Column
	required []bool
	vals     []parquet.Value
	idx      []int
}

// NewWriter starts a Parquet file on w, with meta as its key/value metadata.
func NewWriter(w io.Writer, cols []Column, meta map[string]string) (*Writer, error) {
	if err := validateColumns(cols); err != nil {
		return nil, fmt.Errorf("parquet writer: %w", err)
	}
	opts := []parquet.WriterOption{newSchema(cols), parquet.Compression(logCodec)}
	for k, v := range meta {
		opts = append(opts, parquet.KeyValueMetadata(k, v))
	}
	pw := &Writer{pw: parquet.NewGenericWriter[any](w, opts...), cols: cols, required: make([]bool, len(cols))}
	for j, c := range cols {
		_, pw.required[j] = reserved(c.Name)
	}
	return pw, nil
}

// Write writes rows, each with one value per column (an int is accepted in a
// float column), as one row group.
func (w *Writer) Write(rows [][]features.Value) error {
	for i, row := range rows {
		if len(row) != len(w.cols) {
			return fmt.Errorf("row %d: %d values for %d columns", i, len(row), len(w.cols))
		}
		for j, v := range row {
			if err := checkValue(w.cols[j], v, w.required[j]); err != nil {
				return fmt.Errorf("row %d column %q: %w", i, w.cols[j].Name, err)
			}
		}
	}
	w.idx = w.idx[:0]
	for i := range rows {
		w.idx = append(w.idx, i)
	}
	var err error
	if w.vals, err = encodeRows(w.pw, w.cols, rows, w.idx, w.vals); err != nil {
		return err
	}
	return w.pw.Flush()
}

// Close writes the footer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.pw == nil {
		return errors.New("parquet writer: closed twice")
	}
	err := w.pw.Close()
	w.pw = nil
	return err
}
