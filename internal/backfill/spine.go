package backfill

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// spine is the input of a dataset: rows of labelled entities at times, in
// the order they are to be written.
type spine struct {
	path  string
	cols  []offline.Column
	table *table  // the values, a column per cols
	times []int64 // per row, epoch ms: the timestamp column's values
	// spineRows is the whole spine's row count when rows are one shard's.
	spineRows int
}

// len is the spine's row count.
func (s *spine) len() int { return s.table.rows() }

// SpineError is a problem with the spine file, naming the file and, where
// there is one, the row (1-based, the header of a CSV being row 1).
type SpineError struct {
	File string
	Row  int
	Err  error
}

func (e *SpineError) Error() string {
	if e.Row > 0 {
		return fmt.Sprintf("spine %s: row %d: %v", e.File, e.Row, e.Err)
	}
	return fmt.Sprintf("spine %s: %v", e.File, e.Err)
}

func (e *SpineError) Unwrap() error { return e.Err }

// readSpine reads a CSV or Parquet spine (by extension). keys are the join
// keys the features need, with their types; tsCol is the timestamp column.
func readSpine(path, tsCol string, keys map[string]features.Type) (*spine, error) {
	var s *spine
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		s, err = readCSV(path, keys)
	case ".parquet":
		s, err = readParquet(path, keys)
	default:
		return nil, &SpineError{File: path, Err: errors.New("want a .csv or .parquet file")}
	}
	if err != nil {
		return nil, err
	}
	s.path = path
	return s, s.check(path, tsCol, keys)
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
	for k, t := range keys {
		j := index(s.cols, k)
		switch {
		case j < 0:
			problems = append(problems, fmt.Sprintf("no column %q: the features' entities need it as a join key", k))
		case s.cols[j].Type != t:
			problems = append(problems, fmt.Sprintf("join key column %q is %s, want %s", k, s.cols[j].Type, t))
		}
	}
	if len(problems) > 0 {
		return &SpineError{File: path, Err: errors.New(strings.Join(problems, "; "))}
	}
	s.times = make([]int64, s.len())
	for i := range s.times {
		t, err := timestamp(s.table.get(i, ts))
		if err != nil {
			return &SpineError{File: path, Row: i + 1 + s.headerRows(path), Err: fmt.Errorf("column %q: %w", tsCol, err)}
		}
		s.times[i] = t
		for k := range keys {
			if s.table.get(i, index(s.cols, k)).IsNull() {
				return &SpineError{File: path, Row: i + 1 + s.headerRows(path), Err: fmt.Errorf("join key %q is empty", k)}
			}
		}
	}
	return nil
}

// headerRows is how many rows come before the first data row in the file.
func (s *spine) headerRows(path string) int {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return 1
	}
	return 0
}

// timestamp reads a spine time: a timestamp, an RFC 3339 string, or an
// integer of epoch milliseconds.
func timestamp(v features.Value) (int64, error) {
	switch v.Type() {
	case features.TypeTimestamp, features.TypeInt:
		return v.Int(), features.CheckTime(v.Int())
	case features.TypeString:
		if ms, err := strconv.ParseInt(v.Str(), 10, 64); err == nil {
			return ms, features.CheckTime(ms)
		}
		ms, err := features.ParseTime(v.Str())
		if err != nil && !errors.Is(err, features.ErrTimeRange) {
			return 0, fmt.Errorf("%q is not an RFC 3339 time or epoch milliseconds", v.Str())
		}
		return ms, err
	case features.TypeNull:
		return 0, errors.New("no timestamp")
	}
	return 0, fmt.Errorf("a %s is not a timestamp", v.Type())
}

func readParquet(path string, keys map[string]features.Type) (*spine, error) {
	cols, rows, _, err := offline.ReadFile(path)
	if err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	return &spine{cols: cols, table: tableOf(cols, rows)}, nil
}

// readCSV reads a CSV spine with a header, in two passes: the first finds
// the columns' types and counts the rows, the second parses the cells into
// a table of that size, so that no cell is held as text. Join keys take
// their key's type; every other column is an int, a float or a string,
// whichever all its values parse as; empty cells are null.
func readCSV(path string, keys map[string]features.Type) (*spine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &SpineError{File: path, Err: err}
	}
	defer f.Close()
	s := &spine{}
	var guesses []typeGuess
	rows := 0
	err = eachRecord(f, path, func(row int, rec []string) error {
		if row > 1 {
			for j, c := range rec {
				guesses[j].see(c)
			}
			rows++
			return nil
		}
		s.cols, guesses = make([]offline.Column, len(rec)), make([]typeGuess, len(rec))
		seen := map[string]bool{}
		rec[0] = strings.TrimPrefix(rec[0], "\ufeff") // the byte-order mark spreadsheets write
		for j, h := range rec {
			if h == "" || seen[h] {
				return &SpineError{File: path, Row: 1, Err: fmt.Errorf("column %d: empty or repeated name %q", j+1, h)}
			}
			seen[h] = true
			s.cols[j] = offline.Column{Name: h}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for j, c := range s.cols {
		if t, ok := keys[c.Name]; ok {
			s.cols[j].Type = t
		} else {
			s.cols[j].Type = guesses[j].typ()
		}
	}
	s.table = newTable(rows, columnTypes(s.cols))
	again := 0 // rows read again
	changed := &SpineError{File: path, Err: errors.New("the file changed while it was read")}
	err = eachRecord(f, path, func(row int, rec []string) error {
		if row == 1 {
			return nil
		}
		if again++; again > rows {
			return changed
		}
		for j, c := range rec {
			v, err := parseCell(c, s.cols[j].Type)
			if err != nil {
				return &SpineError{File: path, Row: row, Err: fmt.Errorf("column %q: %w", s.cols[j].Name, err)}
			}
			s.table.set(row-2, j, v)
		}
		return nil
	})
	if err == nil && again != rows {
		err = changed
	}
	return s, err
}

// eachRecord calls fn with each record of a CSV file from its start, and
// its row number from 1, the header's.
func eachRecord(f *os.File, path string, fn func(row int, rec []string) error) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return &SpineError{File: path, Err: err}
	}
	r := csv.NewReader(f)
	r.ReuseRecord = true
	for row := 1; ; row++ {
		rec, err := r.Read()
		switch {
		case row == 1 && err != nil:
			return &SpineError{File: path, Row: 1, Err: fmt.Errorf("no header: %w", err)}
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return &SpineError{File: path, Row: row, Err: err}
		}
		if err := fn(row, rec); err != nil {
			return err
		}
	}
}

// typeGuess is what a column's cells seen so far all parse as.
type typeGuess struct{ notInt, notFloat, any bool }

// see takes a cell. An int is one as Go writes it, so that the dataset's
// column reads as the spine's; digits that are not (a code with a leading
// zero, an id too long for an int64) make the column a string column, not
// a float one that would change them.
func (g *typeGuess) see(c string) {
	if c == "" {
		return
	}
	g.any = true
	if g.notInt && g.notFloat {
		return
	}
	var buf [24]byte
	if i, err := strconv.ParseInt(c, 10, 64); err == nil && string(strconv.AppendInt(buf[:0], i, 10)) == c {
		return
	}
	g.notInt = true
	if strings.TrimLeft(strings.TrimPrefix(c, "-"), "0123456789") == "" {
		g.notFloat = true
	}
	if !g.notFloat {
		if f, err := strconv.ParseFloat(c, 64); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			g.notFloat = true
		}
	}
}

func (g *typeGuess) typ() features.Type {
	switch {
	case g.any && !g.notInt:
		return features.TypeInt
	case g.any && !g.notFloat:
		return features.TypeFloat
	}
	return features.TypeString
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

func names(cols []offline.Column) string {
	var ns []string
	for _, c := range cols {
		ns = append(ns, c.Name)
	}
	return strings.Join(ns, ", ")
}
