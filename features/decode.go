package features

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Reasons an event is refused, as the DLQ records them.
const (
	ReasonInvalidJSON      = "invalid_json"       // not a JSON object
	ReasonSchema           = "schema_violation"   // a field does not have its declared type
	ReasonMissingEventTime = "missing_event_time" // the event-time field is missing or null
	ReasonLate             = "late"               // older than the watermark allows (decided by ingest)
)

// DecodeError says why an event was refused.
type DecodeError struct {
	Reason string // one of the Reason constants
	Field  string // the schema field at fault, if any
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Reason, e.Msg)
	}
	return fmt.Sprintf("%s: field %s: %s", e.Reason, e.Field, e.Msg)
}

// DecodeJSON decodes one JSON object into ev, one value per schema field, in
// schema order. Missing and null fields are null; fields the schema does not
// declare are ignored; a field's key given twice is refused (a
// schema_violation: which value is meant is not known, and JSON readers
// differ, some taking the first and some the last). A string field
// takes a JSON string (invalid UTF-8 and escaped lone surrogates become
// U+FFFD, as in encoding/json); int, a JSON integer; float, a JSON number of
// magnitude at most 1e140 (every view may sum it exactly, so a view never
// refuses an event the log holds); bool, true or false; timestamp, an RFC
// 3339 string or integer epoch milliseconds. ev.Time is the event-time
// field. The error is a *DecodeError.
//
// Whether data is JSON is decided by encoding/json's scanner (json.Valid,
// which allocates nothing); values are then read with fastjson (no map per
// event, pooled parsers), numbers from their text with strconv, as
// encoding/json does, so values are exact.
func (s *Source) DecodeJSON(data []byte, ev *Event) error {
	if !json.Valid(data) {
		var v any
		return &DecodeError{Reason: ReasonInvalidJSON, Msg: json.Unmarshal(data, &v).Error()}
	}
	p := parsers.Get()
	defer parsers.Put(p)
	root, err := p.ParseBytes(ReplaceLoneSurrogates(data))
	if err != nil {
		return &DecodeError{Reason: ReasonInvalidJSON, Msg: err.Error()}
	}
	obj, err := root.Object()
	if err != nil {
		return &DecodeError{Reason: ReasonInvalidJSON, Msg: "not a JSON object"}
	}
	ev.Fields = append(ev.Fields[:0], make([]Value, len(s.Schema))...)
	var bad []error // per field, once one is bad
	var small [4]uint64
	seen := small[:] // a bit per field
	if n := (len(s.Schema) + 63) / 64; n > len(small) {
		seen = make([]uint64, n)
	}
	var num [64]byte
	obj.Visit(func(key []byte, v *fastjson.Value) {
		i := s.fieldBytes(key)
		if i < 0 {
			return
		}
		val, err := decodeValue(v, s.Schema[i].Type, num[:0])
		if seen[i/64]&(1<<(i%64)) != 0 {
			err = errKeyTwice
		}
		seen[i/64] |= 1 << (i % 64)
		if err != nil && bad == nil {
			bad = make([]error, len(s.Schema))
		}
		if bad != nil && bad[i] != errKeyTwice {
			bad[i] = err
		}
		ev.Fields[i] = val
	})
	for i, err := range bad { // the first bad field in schema order
		if err != nil {
			return &DecodeError{Reason: ReasonSchema, Field: s.Schema[i].Name, Msg: err.Error()}
		}
	}
	t := ev.Fields[s.Field(s.EventTime)]
	if t.IsNull() {
		return &DecodeError{Reason: ReasonMissingEventTime, Field: s.EventTime, Msg: "missing or null"}
	}
	ev.Time = t.Int()
	if err := CheckTime(ev.Time); err != nil { // an int field, in microseconds say: a timestamp field checked it
		return &DecodeError{Reason: ReasonSchema, Field: s.EventTime, Msg: "event time " + err.Error()}
	}
	return nil
}

var parsers fastjson.ParserPool

var errKeyTwice = errors.New("the key is given twice")

// fieldBytes is Field for a key in bytes, without converting it.
func (s *Source) fieldBytes(name []byte) int {
	for i, f := range s.Schema {
		if f.Name == string(name) {
			return i
		}
	}
	return -1
}

func decodeValue(v *fastjson.Value, t Type, scratch []byte) (Value, error) {
	jt := v.Type()
	if jt == fastjson.TypeNull {
		return Null, nil
	}
	var text string // a number's text, valid JSON (json.Valid checked it)
	if jt == fastjson.TypeNumber {
		raw := v.MarshalTo(scratch)
		text = unsafe.String(unsafe.SliceData(raw), len(raw))
	}
	switch t {
	case TypeString:
		if jt == fastjson.TypeString {
			b, _ := v.StringBytes()
			return String(ValidUTF8(b)), nil
		}
	case TypeInt:
		if jt == fastjson.TypeNumber {
			i, err := strconv.ParseInt(text, 10, 64)
			if errors.Is(err, strconv.ErrRange) {
				return Null, fmt.Errorf("%s is out of the int64 range", text)
			}
			if err != nil {
				return Null, fmt.Errorf("%s is not an integer: an int is written with digits alone", text)
			}
			return Int(i), nil
		}
	case TypeFloat:
		if jt == fastjson.TypeNumber {
			f, err := strconv.ParseFloat(text, 64)
			if err != nil || !(math.Abs(f) <= maxMagnitude) {
				return Null, fmt.Errorf("%s is out of range: a float's magnitude is at most %g, so that sums stay exact", text, maxMagnitude)
			}
			return Float(f), nil
		}
	case TypeBool:
		switch jt {
		case fastjson.TypeTrue:
			return Bool(true), nil
		case fastjson.TypeFalse:
			return Bool(false), nil
		}
	case TypeTimestamp:
		switch jt {
		case fastjson.TypeNumber:
			ms, err := strconv.ParseInt(text, 10, 64)
			if err != nil {
				return Null, fmt.Errorf("%s is not integer epoch milliseconds", text)
			}
			if err := CheckTime(ms); err != nil {
				return Null, err
			}
			return Timestamp(ms), nil
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			ms, err := ParseTime(string(b))
			if err != nil {
				return Null, err
			}
			return Timestamp(ms), nil
		}
		return Null, fmt.Errorf("want timestamp (RFC 3339 string or epoch milliseconds), got %s", jsonKind(jt, text))
	}
	return Null, fmt.Errorf("want %s, got %s", t, jsonKind(jt, text))
}

// ValidUTF8 returns b as a string, each byte that is not valid UTF-8
// replaced by U+FFFD, as encoding/json does. A string from outside bytes
// that can name an entity goes through it wherever it is read (an event,
// a lookup, a spine), so that all of them name the entity alike.
func ValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// ReplaceLoneSurrogates returns the JSON text data with each escape of a
// UTF-16 surrogate that is not half of a pair replaced by \ufffd, which is
// how encoding/json reads it. fastjson keeps such an escape as its six
// characters, so "\ud800" would name the same entity as "\\ud800", and it
// drops the escape after a high surrogate that does not pair with it. data
// must be valid JSON; it is returned as it is when it holds no lone
// surrogate, and copied otherwise.
func ReplaceLoneSurrogates(data []byte) []byte {
	out, copied := data, false
	for i := bytes.IndexByte(data, '\\'); i >= 0 && i+1 < len(data); {
		n := 2 // the escape's length
		if data[i+1] == 'u' && i+6 <= len(data) {
			n = 6
			if r := hex4(data[i+2 : i+6]); r >= 0xd800 && r <= 0xdfff {
				if r < 0xdc00 && i+12 <= len(data) && data[i+6] == '\\' && data[i+7] == 'u' && isLowSurrogate(hex4(data[i+8:i+12])) {
					n = 12
				} else {
					if !copied {
						out, copied = bytes.Clone(data), true
					}
					copy(out[i+2:], "fffd")
				}
			}
		}
		i += n
		j := bytes.IndexByte(data[min(i, len(data)):], '\\')
		if j < 0 {
			break
		}
		i += j
	}
	return out
}

func isLowSurrogate(r int) bool { return r >= 0xdc00 && r <= 0xdfff }

// hex4 is the value of four hexadecimal digits, or -1.
func hex4(b []byte) int {
	v, err := strconv.ParseUint(string(b), 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

func jsonKind(t fastjson.Type, number string) string {
	switch t {
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeNumber:
		return "the number " + number
	}
	return "null"
}
