package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
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
// declare are ignored. A string field takes a JSON string; int, a JSON
// integer; float, any JSON number; bool, true or false; timestamp, an RFC 3339
// string or integer epoch milliseconds. ev.Time is the event-time field. The
// error is a *DecodeError.
func (s *Source) DecodeJSON(data []byte, ev *Event) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		msg := "not a JSON object"
		if err != nil {
			msg = err.Error()
		}
		return &DecodeError{Reason: ReasonInvalidJSON, Msg: msg}
	}
	ev.Fields = ev.Fields[:0]
	for _, f := range s.Schema {
		v, err := decodeValue(obj[f.Name], f.Type)
		if err != nil {
			return &DecodeError{Reason: ReasonSchema, Field: f.Name, Msg: err.Error()}
		}
		ev.Fields = append(ev.Fields, v)
	}
	t := ev.Fields[s.Field(s.EventTime)]
	if t.IsNull() {
		return &DecodeError{Reason: ReasonMissingEventTime, Field: s.EventTime, Msg: "missing or null"}
	}
	ev.Time = t.Int()
	return nil
}

var null = []byte("null")

func decodeValue(raw json.RawMessage, t Type) (Value, error) {
	if len(raw) == 0 || bytes.Equal(raw, null) {
		return Null, nil
	}
	switch t {
	case TypeString:
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err == nil {
				return String(s), nil
			}
		}
	case TypeInt:
		if isNumber(raw) {
			i, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return Null, fmt.Errorf("%s is not an integer in the int64 range", raw)
			}
			return Int(i), nil
		}
	case TypeFloat:
		if isNumber(raw) {
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil || math.IsInf(f, 0) {
				return Null, fmt.Errorf("%s is out of the float64 range", raw)
			}
			return Float(f), nil
		}
	case TypeBool:
		switch string(raw) {
		case "true":
			return Bool(true), nil
		case "false":
			return Bool(false), nil
		}
	case TypeTimestamp:
		return decodeTimestamp(raw)
	}
	return Null, fmt.Errorf("want %s, got %s", t, jsonKind(raw))
}

func decodeTimestamp(raw json.RawMessage) (Value, error) {
	if isNumber(raw) {
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return Null, fmt.Errorf("%s is not integer epoch milliseconds", raw)
		}
		return Timestamp(ms), nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return Null, fmt.Errorf("want timestamp (RFC 3339 string or epoch milliseconds), got %s", jsonKind(raw))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Null, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return Timestamp(t.UnixMilli()), nil
}

// isNumber reports whether raw, a valid JSON value, is a number.
func isNumber(raw json.RawMessage) bool { return raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') }

func jsonKind(raw json.RawMessage) string {
	switch {
	case raw[0] == '"':
		return "a string"
	case raw[0] == '{':
		return "an object"
	case raw[0] == '[':
		return "an array"
	case raw[0] == 't' || raw[0] == 'f':
		return "a boolean"
	case isNumber(raw):
		return "the number " + string(raw)
	}
	return "invalid JSON"
}
