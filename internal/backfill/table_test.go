package backfill

import (
	"math"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// A table gives back each value as set, bit for bit, in every type.
func TestTableRoundTrip(t *testing.T) {
	types := []features.Type{features.TypeInt, features.TypeFloat, features.TypeString, features.TypeBool, features.TypeTimestamp, features.TypeNull}
	vals := [][]features.Value{
		{features.Int(math.MinInt64), features.Float(math.Copysign(0, -1)), features.String(""), features.Bool(false), features.Timestamp(-1), features.String("dynamic")},
		{features.Int(-1), features.Float(math.NaN()), features.String("a string"), features.Bool(true), features.Timestamp(1e12), features.Float(2.5)},
		{features.Null, features.Null, features.Null, features.Null, features.Null, features.Null},
		{features.Int(math.MaxInt64), features.Float(math.Inf(-1)), features.String("é"), features.Bool(true), features.Timestamp(math.MaxInt64), features.Int(7)},
	}
	tab := newTable(len(vals), types)
	for r := len(vals) - 1; r >= 0; r-- { // any order
		for c, v := range vals[r] {
			tab.set(r, c, v)
		}
	}
	if tab.rows() != len(vals) {
		t.Fatalf("%d rows, want %d", tab.rows(), len(vals))
	}
	for r, row := range vals {
		got := tab.row(nil, r)
		for c, v := range row {
			if !got[c].Equal(v) || !tab.get(r, c).Equal(v) {
				t.Errorf("row %d column %d: %v, want %v", r, c, got[c], v)
			}
		}
	}
}
