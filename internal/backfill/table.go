package backfill

import (
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// table holds values row after row: a spine's, a dataset's features. A
// value is a cell of its type and bits, with no pointer for the garbage
// collector to scan in millions of values; a string column keeps its
// strings aside. Cells are half the size of values, so writing an entity's
// features at a random row touches half the memory.
type table struct {
	width int
	cells []cell
	strs  [][]string // per column: each row's string, for string columns; else nil
}

type cell struct {
	bits uint64 // features.Value.Bits
	typ  features.Type
	nano uint32 // features.Value.Nano
}

// newTable makes a table of rows rows, a column of each type; a column of
// TypeNull, its type not known yet, may hold strings.
func newTable(rows int, types []features.Type) *table {
	t := &table{width: len(types), cells: make([]cell, rows*len(types)), strs: make([][]string, len(types))}
	for c, typ := range types {
		if typ == features.TypeString || typ == features.TypeNull {
			t.strs[c] = make([]string, rows)
		}
	}
	return t
}

// tableOf makes a table of rows of values of cols.
func tableOf(cols []offline.Column, rows [][]features.Value) *table {
	t := newTable(len(rows), columnTypes(cols))
	for r, row := range rows {
		for c, v := range row {
			t.set(r, c, v)
		}
	}
	return t
}

func columnTypes(cols []offline.Column) []features.Type {
	types := make([]features.Type, len(cols))
	for j, c := range cols {
		types[j] = c.Type
	}
	return types
}

func (t *table) rows() int {
	if t.width == 0 {
		return 0
	}
	return len(t.cells) / t.width
}

// text returns the bytes of the table's strings.
func (t *table) text() int64 {
	var n int64
	for _, col := range t.strs {
		for _, s := range col {
			n += int64(len(s))
		}
	}
	return n
}

// set sets row r's value in column c; a string goes only in a column that
// may hold strings.
func (t *table) set(r, c int, v features.Value) {
	if v.Type() == features.TypeString {
		t.strs[c][r] = v.Str()
	}
	t.cells[r*t.width+c] = cell{bits: v.Bits(), typ: v.Type(), nano: v.Nano()}
}

// get returns row r's value in column c.
func (t *table) get(r, c int) features.Value {
	x := t.cells[r*t.width+c]
	switch x.typ {
	case features.TypeString:
		return features.String(t.strs[c][r])
	case features.TypeTimestamp:
		return features.TimestampNano(int64(x.bits), x.nano)
	}
	return features.FromBits(x.typ, x.bits)
}

// row appends row r's values to dst.
func (t *table) row(dst []features.Value, r int) []features.Value {
	for c := range t.width {
		dst = append(dst, t.get(r, c))
	}
	return dst
}
