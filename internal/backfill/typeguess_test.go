package backfill

import (
	"math/big"
	"strconv"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// TestTypeGuessKeepsDigits: a CSV column is a float column only if a
// double keeps every digit of every cell, as the dataset writes it back
// (its shortest form); a cell it does not keep makes it a string column.
func TestTypeGuessKeepsDigits(t *testing.T) {
	for _, c := range []struct {
		cells []string
		want  features.Type
	}{
		{[]string{"1.5", "2", "7e3", "-0.25", "", "1e300", "123456789012345"}, features.TypeFloat},
		{[]string{"12345678901234567", "1.5", "7e3"}, features.TypeString}, // 1.2345678901234568e+16
		{[]string{"1.5", "9007199254740993"}, features.TypeString},         // 2⁵³+1
		{[]string{"1.5", "9007199254740992"}, features.TypeFloat},          // 2⁵³: 9.007199254740992e+15
		{[]string{"1152921504606846976", "0.5"}, features.TypeString},      // 2⁶⁰, written 1.152921504606847e+18
		{[]string{"0.30000000000000004", "1.0000000000000000000"}, features.TypeFloat},
		{[]string{"0.12345678901234568", "123456.78901234567", "1.2345678901234568e+16"}, features.TypeFloat}, // as pandas writes them
		{[]string{"1.2345678901234567e+16"}, features.TypeString},                                             // 1.2345678901234568e+16
		{[]string{"0.1000000000000000055511151231257827"}, features.TypeString},                               // 0.1's exact value: written 0.1
		{[]string{"1e-400", "1"}, features.TypeString},                                                        // 0
		{[]string{"4.9e-324"}, features.TypeString},                                                           // 5e-324
		{[]string{"5e-324", "0.0", "-0.0", "0e99999"}, features.TypeFloat},
		{[]string{"12345678901234567", "3"}, features.TypeInt}, // ints stay ints
	} {
		var g typeGuess
		for _, cell := range c.cells {
			g.see(cell)
		}
		if got := g.typ(); got != c.want {
			t.Errorf("%q: %s, want %s", c.cells, got, c.want)
			continue
		}
		if c.want != features.TypeFloat {
			continue
		}
		for _, cell := range c.cells {
			if cell == "" {
				continue
			}
			v, err := parseCell(cell, features.TypeFloat)
			var want, got big.Rat
			want.SetString(cell)
			got.SetString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
			if err != nil || want.Cmp(&got) != 0 {
				t.Errorf("%q reads as %v (%v)", cell, v, err)
			}
		}
	}
}
