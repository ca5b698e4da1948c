package offline

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/quiver-ml/quiver/features"
)

// A DECIMAL column (DuckDB writes the literal 1.5 as one, Spark writes
// amounts as one) is read as an int when it has no decimals and an int
// holds it, else as a float when its precision is at most floatDigits: the
// float nearest such a decimal turns back into it, so a writer given the
// column's Stored writes the same decimal. A DECIMAL of more digits is read
// as its exact text ("-12.50"), written back alike.
const floatDigits = 15

// decimalType is the type a DECIMAL of precision p and scale s is read as.
func decimalType(p, s int32) features.Type {
	switch {
	case s == 0 && p <= 18:
		return features.TypeInt
	case p <= floatDigits:
		return features.TypeFloat
	}
	return features.TypeString
}

// maxDecimalDigits is the largest precision a DECIMAL stored as kind in
// length bytes may declare (parquet-format's LogicalTypes.md), up to 76
// digits (256 bits, Arrow's widest decimal): 0 if it is not a DECIMAL's kind.
func maxDecimalDigits(kind parquet.Kind, length int) int32 {
	switch kind {
	case parquet.Int32:
		return 9
	case parquet.Int64:
		return 18
	case parquet.FixedLenByteArray:
		if length < 1 || length > 32 {
			return 0
		}
		// floor(log10(2^(8·length−1) − 1))
		return int32(len(new(big.Int).Lsh(big.NewInt(1), uint(8*length-1)).String()) - 1)
	case parquet.ByteArray:
		return 76
	}
	return 0
}

// unscaled returns the integer a DECIMAL value stores: an INT32's or
// INT64's own, or a byte array's big-endian two's complement.
func unscaled(v parquet.Value) *big.Int {
	switch v.Kind() {
	case parquet.Int32:
		return big.NewInt(int64(v.Int32()))
	case parquet.Int64:
		return big.NewInt(v.Int64())
	}
	b := v.ByteArray()
	x := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return x
}

// decimalValue converts a DECIMAL's unscaled integer u and scale to a value
// of type typ (decimalType): the int, the nearest float, or the exact text.
func decimalValue(u *big.Int, scale int32, typ features.Type) features.Value {
	switch typ {
	case features.TypeInt:
		if !u.IsInt64() { // more digits than the precision: check refuses it
			return features.Int(int64(u.Sign()) * math.MaxInt64)
		}
		return features.Int(u.Int64())
	case features.TypeString:
		digits := new(big.Int).Abs(u).String()
		if pad := int(scale) + 1 - len(digits); pad > 0 {
			digits = strings.Repeat("0", pad) + digits
		}
		text := digits
		if scale > 0 {
			text = digits[:len(digits)-int(scale)] + "." + digits[len(digits)-int(scale):]
		}
		if u.Sign() < 0 {
			text = "-" + text
		}
		return features.String(text)
	}
	// Both exact, so their quotient is correctly rounded.
	if x := u.Int64(); u.IsInt64() && x >= -1<<53 && x <= 1<<53 && int(scale) < len(exactPow10) {
		return features.Float(float64(x) / exactPow10[scale])
	}
	f, _ := new(big.Rat).SetFrac(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)).Float64()
	return features.Float(f)
}

// exactPow10 are the powers of ten a float64 holds exactly.
var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// check refuses values of c from first on, the rows of a group after
// before others, that the column's type says cannot be: an unsigned int
// above the int range, a decimal of more digits than its precision. Its
// error names the row, counted from 1.
func (l *leaf) check(c *ColumnValues, first int, before int64) error {
	row := func(i int) int64 { return before + int64(i) + 1 }
	switch {
	case l.conv == fromUint64:
		for i, b := range c.Bits[first:] {
			if int64(b) < 0 { // a null's bits are 0
				return fmt.Errorf("row %d: an unsigned value, %d, is above %d, the largest int", row(i), b, math.MaxInt64)
			}
		}
	case l.conv != fromDecimal:
	case l.typ == features.TypeString:
		for i, x := range c.Index[first:] {
			if x < 0 {
				continue // null
			}
			if text := c.Strings[x].Str(); unscaledDigits(text) > int(l.precision) {
				return fmt.Errorf("row %d: %s has more digits than the column's precision, %d", row(i), text, l.precision)
			}
		}
	case l.typ == features.TypeInt:
		limit := int64(math.Pow10(int(l.precision))) // exact: at most 10^18
		for i, b := range c.Bits[first:] {
			x := int64(b)
			if x == math.MaxInt64 || x == -math.MaxInt64 { // decimalValue's clamp of a larger value
				return fmt.Errorf("row %d: a value of 19 digits or more has more digits than the column's precision, %d", row(i), l.precision)
			}
			if x >= limit || x <= -limit { // a null's bits are 0
				return fmt.Errorf("row %d: %d has more digits than the column's precision, %d", row(i), x, l.precision)
			}
		}
	default:
		// A float's decimal has at most 15 digits: below 10^(precision −
		// scale) if within the precision, and so is its float.
		limit := math.Pow10(int(l.precision - l.scale))
		for i, b := range c.Bits[first:] {
			if x := math.Float64frombits(b); math.Abs(x) >= limit { // a null's bits are 0
				return fmt.Errorf("row %d: %v has more digits than the column's precision, %d", row(i), x, l.precision)
			}
		}
	}
	return nil
}

// unscaledDigits is the number of digits of the unscaled integer of a
// decimal's text.
func unscaledDigits(text string) int {
	return len(strings.TrimLeft(strings.Replace(strings.TrimPrefix(text, "-"), ".", "", 1), "0"))
}

// decimalOf is the inverse of decimalValue: v's unscaled integer at scale
// s.Scale, refused if it has more digits than s.Precision or more
// fraction digits than the scale.
func (s Stored) decimalOf(v features.Value) (*big.Int, error) {
	var text string
	switch v.Type() {
	case features.TypeFloat:
		text = strconv.FormatFloat(v.Float(), 'f', int(s.Scale), 64)
	case features.TypeInt:
		text = strconv.FormatInt(v.Int(), 10)
	default:
		text = v.Str()
	}
	whole, frac, dot := strings.Cut(strings.TrimPrefix(text, "-"), ".")
	if !digitsOnly(whole) || dot && !digitsOnly(frac) {
		return nil, fmt.Errorf("%q is not a decimal number", text)
	}
	if len(frac) > int(s.Scale) {
		return nil, fmt.Errorf("%s has more than the column's %d decimals", text, s.Scale)
	}
	u, _ := new(big.Int).SetString(whole+frac+strings.Repeat("0", int(s.Scale)-len(frac)), 10)
	if strings.HasPrefix(text, "-") {
		u.Neg(u)
	}
	if digits := len(new(big.Int).Abs(u).String()); u.Sign() != 0 && digits > int(s.Precision) {
		return nil, fmt.Errorf("%s has more than the column's %d digits", text, s.Precision)
	}
	return u, nil
}

func digitsOnly(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// decimalParquet returns u as s stores it. u fits (decimalOf).
func (s Stored) decimalParquet(u *big.Int) parquet.Value {
	switch s.Kind {
	case parquet.Int32:
		return parquet.Int32Value(int32(u.Int64()))
	case parquet.Int64:
		return parquet.Int64Value(u.Int64())
	}
	n := int(s.Length)
	if s.Kind == parquet.ByteArray {
		n = (u.BitLen() + 8) / 8 // the fewest bytes with room for the sign
	}
	b := make([]byte, n)
	if u.Sign() >= 0 {
		u.FillBytes(b)
	} else {
		new(big.Int).Add(u, new(big.Int).Lsh(big.NewInt(1), uint(8*n))).FillBytes(b)
	}
	if s.Kind == parquet.ByteArray {
		return parquet.ByteArrayValue(b)
	}
	return parquet.FixedLenByteArrayValue(b)
}

// uuidText is a UUID's 16 bytes as its canonical text.
func uuidText(b []byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], b[0:4])
	hex.Encode(buf[9:13], b[4:6])
	hex.Encode(buf[14:18], b[6:8])
	hex.Encode(buf[19:23], b[8:10])
	hex.Encode(buf[24:], b[10:16])
	buf[8], buf[13], buf[18], buf[23] = '-', '-', '-', '-'
	return string(buf[:])
}

// uuidBytes is the inverse of uuidText.
func uuidBytes(text string) ([]byte, error) {
	if len(text) != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-' {
		return nil, errors.New("not a UUID's 8-4-4-4-12 hexadecimal text")
	}
	b, err := hex.DecodeString(text[0:8] + text[9:13] + text[14:18] + text[19:23] + text[24:])
	if err != nil {
		return nil, fmt.Errorf("not a UUID's hexadecimal text: %w", err)
	}
	return b, nil
}
