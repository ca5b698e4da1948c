package features

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is the declared type of a source field and of a feature's value.
type Type uint8

// The types a source schema may declare. TypeNull is the type of no value.
const (
	TypeNull Type = iota
	TypeString
	TypeInt
	TypeFloat
	TypeBool
	TypeTimestamp
)

var typeNames = [...]string{"null", "string", "int", "float", "bool", "timestamp"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// parseType returns the schema type named s; "null" is not a declarable type.
func parseType(s string) (Type, bool) {
	for i, n := range typeNames[1:] {
		if n == s {
			return Type(i + 1), true
		}
	}
	return TypeNull, false
}

func (t Type) numeric() bool { return t == TypeInt || t == TypeFloat }

// Value is one typed value: a field of an event or a feature's result. The zero
// Value is null. Timestamps are epoch milliseconds, UTC; one read from a file
// that stores finer units keeps the nanoseconds past its millisecond too
// (TimestampNano), so that it is written back as it was read, but every
// computation reads its millisecond.
type Value struct {
	typ  Type
	nano uint32 // a timestamp's nanoseconds past num, below 1e6
	num  uint64 // int64, float64 bits, bool (0/1) or epoch ms
	str  string
}

// Null is the absent value.
var Null = Value{}

func (v *Value) reset() { *v = Null }

// String returns a string value.
func String(s string) Value { return Value{typ: TypeString, str: s} }

// Int returns an int value.
func Int(i int64) Value { return Value{typ: TypeInt, num: uint64(i)} }

// Float returns a float value.
func Float(f float64) Value { return Value{typ: TypeFloat, num: math.Float64bits(f)} }

// Bool returns a bool value.
func Bool(b bool) Value {
	v := Value{typ: TypeBool}
	if b {
		v.num = 1
	}
	return v
}

// Timestamp returns a timestamp value of epoch milliseconds.
func Timestamp(ms int64) Value { return Value{typ: TypeTimestamp, num: uint64(ms)} }

// TimestampNano returns a timestamp value of epoch milliseconds and nano
// nanoseconds past them, nano below 1e6.
func TimestampNano(ms int64, nano uint32) Value {
	return Value{typ: TypeTimestamp, num: uint64(ms), nano: nano}
}

// FromBits returns the int, float, bool or timestamp of type typ whose bits
// are bits (Value.Bits); Null for another type.
func FromBits(typ Type, bits uint64) Value {
	switch typ {
	case TypeInt, TypeFloat, TypeTimestamp:
		return Value{typ: typ, num: bits}
	case TypeBool:
		return Bool(bits != 0)
	}
	return Null
}

// The times a timestamp may hold, in epoch milliseconds: years 1 to 9999
// UTC, those RFC 3339 writes and a date partition names.
const (
	MinTime = -62135596800000 // 0001-01-01T00:00:00Z
	MaxTime = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// ErrTimeRange is what a time outside MinTime to MaxTime gives.
var ErrTimeRange = errors.New("outside years 1 to 9999")

// CheckTime returns an error matching ErrTimeRange if ms is outside MinTime
// to MaxTime.
func CheckTime(ms int64) error {
	if ms < MinTime || ms > MaxTime {
		return fmt.Errorf("%d ms is %w", ms, ErrTimeRange)
	}
	return nil
}

// ParseTime parses an RFC 3339 time to epoch milliseconds, as
// time.RFC3339Nano reads it and with what RFC 3339 also allows and tools
// write: a lower-case t or z, or a space between the date and the time.
// A time outside MinTime to MaxTime gives an error matching ErrTimeRange.
func ParseTime(s string) (int64, error) {
	v, err := ParseTimestamp(s)
	return v.Int(), err
}

// ParseTimestamp parses an RFC 3339 time as ParseTime does, to a timestamp
// that keeps the digits below the millisecond (Nano).
func ParseTimestamp(s string) (Value, error) {
	text := s
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Null, fmt.Errorf("%q is not an RFC 3339 time", text)
	}
	ms := t.UnixMilli()
	if CheckTime(ms) != nil {
		return Null, fmt.Errorf("%q is %w", text, ErrTimeRange)
	}
	return TimestampNano(ms, uint32(t.Nanosecond()%1e6)), nil
}

// Type returns the value's type; TypeNull for null.
func (v Value) Type() Type { return v.typ }

// IsNull reports whether v is null.
func (v Value) IsNull() bool { return v.typ == TypeNull }

// Str returns the string of a string value.
func (v Value) Str() string { return v.str }

// Int returns the integer of an int value, or the epoch ms of a timestamp.
func (v Value) Int() int64 { return int64(v.num) }

// Float returns the number of a float value; an int is converted.
func (v Value) Float() float64 {
	if v.typ == TypeInt {
		return float64(int64(v.num))
	}
	return math.Float64frombits(v.num)
}

// Bits returns the bits of an int, float, bool or timestamp: an int's or a
// timestamp's two's complement, a float's IEEE 754 bits, a bool's 0 or 1;
// 0 for a string or null. FromBits gives the value back, but for a
// timestamp's Nano.
func (v Value) Bits() uint64 { return v.num }

// Nano returns a timestamp's nanoseconds past its millisecond (Int).
func (v Value) Nano() uint32 { return v.nano }

// Time returns a timestamp's time, UTC.
func (v Value) Time() time.Time {
	return time.UnixMilli(v.Int()).Add(time.Duration(v.nano)).UTC()
}

// Bool returns the boolean of a bool value.
func (v Value) Bool() bool { return v.num != 0 }

// Any returns v as a plain Go value for JSON and CEL: nil, string, int64,
// float64, bool or time.Time.
func (v Value) Any() any {
	switch v.typ {
	case TypeString:
		return v.str
	case TypeInt:
		return v.Int()
	case TypeFloat:
		return v.Float()
	case TypeBool:
		return v.Bool()
	case TypeTimestamp:
		return v.Time()
	}
	return nil
}

// Equal reports whether v and w have the same type and the same bits; two NaN
// floats with the same bits are equal.
func (v Value) Equal(w Value) bool { return v == w }

// less orders two values of one numeric or timestamp type.
func (v Value) less(w Value) bool {
	if v.typ == TypeFloat {
		return v.Float() < w.Float()
	}
	return v.Int() < w.Int()
}

func (v Value) String() string {
	switch v.typ {
	case TypeString:
		return strconv.Quote(v.str)
	case TypeInt:
		return strconv.FormatInt(v.Int(), 10)
	case TypeFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case TypeBool:
		return strconv.FormatBool(v.Bool())
	case TypeTimestamp:
		return v.Time().Format(time.RFC3339Nano)
	case TypeNull:
		return "null"
	}
	return fmt.Sprintf("value(%d)", v.typ)
}
