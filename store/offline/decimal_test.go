package offline_test

import (
	"bytes"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestDecimalBeyondPrecision checks that a DECIMAL value with more digits
// than its column declares refuses the file, whichever type the column
// reads as, and that a column of nulls alone reads.
func TestDecimalBeyondPrecision(t *testing.T) {
	for _, c := range []struct {
		name             string
		precision, scale int
		unscaled         string // "" for null
		err              string
		want             features.Value
	}{
		{"int", 18, 0, "99999999999999999999999", "row 1: a value of 19 digits or more has more digits than the column's precision, 18", features.Null},
		{"negative int", 18, 0, "-99999999999999999999999", "row 1: a value of 19 digits or more has more digits than the column's precision, 18", features.Null},
		{"float", 5, 2, "1234567", "row 1: 12345.67 has more digits than the column's precision, 5", features.Null},
		{"text", 20, 2, "12345678901234567890123", "row 1: 123456789012345678901.23 has more digits than the column's precision, 20", features.Null},
		{"within", 20, 2, "-12345678901234567890", "", features.String("-123456789012345678.90")},
		{"nulls", 20, 2, "", "", features.Null},
	} {
		t.Run(c.name, func(t *testing.T) {
			schema := parquet.NewSchema("spine", parquet.Group{"d": parquet.Optional(parquet.Decimal(c.scale, c.precision, parquet.FixedLenByteArrayType(16)))})
			var buf bytes.Buffer
			w := parquet.NewWriter(&buf, schema)
			v := parquet.NullValue().Level(0, 0, 0)
			if c.unscaled != "" {
				u, _ := new(big.Int).SetString(c.unscaled, 10)
				if u.Sign() < 0 {
					u.Add(u, new(big.Int).Lsh(big.NewInt(1), 128)) // two's complement
				}
				v = parquet.FixedLenByteArrayValue(u.FillBytes(make([]byte, 16))).Level(0, 1, 0)
			}
			if _, err := w.WriteRows([]parquet.Row{{v}}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "spine.parquet")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			_, rows, _, err := offline.ReadFile(path)
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("ReadFile: %v, rows %v; want %q", err, rows, c.err)
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err == "" && rows[0][0] != c.want:
				t.Errorf("reads %v, want %v", rows[0][0], c.want)
			}
		})
	}
}
