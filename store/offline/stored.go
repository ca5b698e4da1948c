package offline

import (
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"

	"github.com/quiver-ml/quiver/features"
)

// Stored is a column's Parquet type as another writer stored it, in a file
// ReadFile read (a spine from pandas or DuckDB, say), where that is not the
// column's own (Column). A writer given a Column with it writes the column
// the same way, each value converted back, so that a spine's columns keep
// their types in a dataset: an INT32 stays INT32, a TIMESTAMP(NANOS) not
// adjusted to UTC stays so, with its digits below the millisecond
// (features.Value.Nano). The zero Stored is the column's own type.
type Stored struct {
	Kind     parquet.Kind
	Logical  storedLogical
	BitWidth int8  // of an INT logical type
	Signed   bool  // of an INT logical type
	PerMilli int64 // of a TIMESTAMP: its units in a millisecond
	UTC      bool  // of a TIMESTAMP: isAdjustedToUTC
	Required bool

	Precision, Scale int32 // of a DECIMAL
	Length           int32 // of a FIXED_LEN_BYTE_ARRAY
}

// storedLogical is the logical type of a Stored column, of those ReadFile
// accepts.
type storedLogical uint8

const (
	logicalNone storedLogical = iota
	logicalString
	logicalEnum
	logicalJSON
	logicalDate
	logicalInt
	logicalTimestamp
	logicalDecimal
	logicalUUID
	logicalNull // a column of nulls only, of Parquet's NULL (UNKNOWN) logical type
)

// storedOf returns how node stores its values. It assumes leafOf accepted
// the node's type.
func storedOf(node parquet.Node) Stored {
	t := node.Type()
	s := Stored{Kind: t.Kind(), Required: node.Required()}
	if s.Kind == parquet.FixedLenByteArray {
		s.Length = int32(t.Length())
	}
	if l := t.LogicalType(); l != nil {
		switch lt := l.Value.(type) {
		case *format.StringType:
			s.Logical = logicalString
		case *format.EnumType:
			s.Logical = logicalEnum
		case *format.JsonType:
			s.Logical = logicalJSON
		case *format.DateType:
			s.Logical = logicalDate
		case *format.IntType:
			s.Logical, s.BitWidth, s.Signed = logicalInt, lt.BitWidth, lt.IsSigned
		case *format.TimestampType:
			s.Logical, s.UTC = logicalTimestamp, lt.IsAdjustedToUTC
			s.PerMilli = int64(1e6) / int64(lt.Unit.Value.Duration())
		case *format.DecimalType:
			s.Logical, s.Precision, s.Scale = logicalDecimal, lt.Precision, lt.Scale
		case *format.UUIDType:
			s.Logical = logicalUUID
		case *format.NullType:
			s.Kind, s.Logical = parquet.Int32, logicalNull // its physical type
		}
	}
	return s
}

// node returns the Parquet node that stores values as s says.
func (s Stored) node() parquet.Node {
	var n parquet.Node
	switch s.Kind {
	case parquet.Boolean:
		n = parquet.Leaf(parquet.BooleanType)
	case parquet.Float:
		n = parquet.Leaf(parquet.FloatType)
	case parquet.Double:
		n = parquet.Leaf(parquet.DoubleType)
	case parquet.ByteArray:
		switch s.Logical {
		case logicalString:
			n = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
		case logicalEnum:
			n = parquet.Encoded(parquet.Enum(), &parquet.RLEDictionary)
		case logicalJSON:
			n = parquet.JSON()
		case logicalDecimal:
			n = parquet.Decimal(int(s.Scale), int(s.Precision), parquet.ByteArrayType)
		default:
			n = parquet.Leaf(parquet.ByteArrayType)
		}
	case parquet.FixedLenByteArray:
		if s.Logical == logicalUUID {
			n = parquet.UUID()
		} else {
			n = parquet.Decimal(int(s.Scale), int(s.Precision), parquet.FixedLenByteArrayType(int(s.Length)))
		}
	case parquet.Int32, parquet.Int64:
		switch {
		case s.Logical == logicalDecimal && s.Kind == parquet.Int32:
			n = parquet.Decimal(int(s.Scale), int(s.Precision), parquet.Int32Type)
		case s.Logical == logicalDecimal:
			n = parquet.Decimal(int(s.Scale), int(s.Precision), parquet.Int64Type)
		case s.Logical == logicalDate:
			n = parquet.Date()
		case s.Logical == logicalTimestamp:
			n = parquet.TimestampAdjusted(timeUnit(s.PerMilli), s.UTC)
		case s.Logical == logicalNull:
			n = parquet.Leaf(parquet.NullType)
		case s.Logical == logicalInt && s.Signed:
			n = parquet.Int(int(s.BitWidth))
		case s.Logical == logicalInt:
			n = parquet.Uint(int(s.BitWidth))
		case s.Kind == parquet.Int32:
			n = parquet.Leaf(parquet.Int32Type)
		default:
			n = parquet.Leaf(parquet.Int64Type)
		}
	case parquet.Int96:
		n = parquet.Leaf(parquet.Int96Type)
	}
	if s.Required {
		return parquet.Required(n)
	}
	return parquet.Optional(n)
}

func timeUnit(perMilli int64) parquet.TimeUnit {
	switch perMilli {
	case 1:
		return parquet.Millisecond
	case 1000:
		return parquet.Microsecond
	}
	return parquet.Nanosecond
}

// value converts v, not null, to a Parquet value stored as s says: the
// inverse of leaf.value.
func (s Stored) value(v features.Value) parquet.Value {
	switch s.Logical {
	case logicalDecimal:
		u, _ := s.decimalOf(v) // checkValue found no error
		return s.decimalParquet(u)
	case logicalUUID:
		b, _ := uuidBytes(v.Str()) // checkValue found no error
		return parquet.FixedLenByteArrayValue(b)
	}
	switch s.Kind {
	case parquet.Boolean:
		return parquet.BooleanValue(v.Bool())
	case parquet.Float:
		return parquet.FloatValue(float32(v.Float()))
	case parquet.Double:
		return parquet.DoubleValue(v.Float())
	case parquet.ByteArray:
		return parquet.ByteArrayValue(unsafeBytes(v.Str()))
	case parquet.Int32:
		if s.Logical == logicalDate {
			return parquet.Int32Value(int32(floorDiv(v.Int(), msPerDay)))
		}
		return parquet.Int32Value(int32(v.Int())) // the low 32 bits: an unsigned int's too
	case parquet.Int64:
		if s.Logical == logicalTimestamp {
			return parquet.Int64Value(v.Int()*s.PerMilli + int64(v.Nano())/(1e6/s.PerMilli))
		}
		return parquet.Int64Value(v.Int())
	}
	return parquet.Int96Value(timeInt96(v))
}

// timeInt96 converts a timestamp to a legacy INT96 timestamp: the inverse
// of int96Time.
func timeInt96(v features.Value) deprecated.Int96 {
	day := floorDiv(v.Int(), msPerDay)
	nanos := uint64(v.Int()-day*msPerDay)*1e6 + uint64(v.Nano())
	return deprecated.Int96{uint32(nanos), uint32(nanos >> 32), uint32(day + julianEpoch)}
}
