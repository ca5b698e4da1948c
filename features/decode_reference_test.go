package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"
)

// FuzzDecodeJSONMatchesReference checks the fast JSON decoder against the
// reference below, written with encoding/json: the same inputs are refused
// for the same reasons, and the same values come back.
func FuzzDecodeJSONMatchesReference(f *testing.F) {
	f.Add([]byte(`{"uid":"u","n":1,"x":2.5,"ok":true,"at":5,"ts":7}`))
	f.Add([]byte(`{"uid":"\ud800x","x":NaN,"ts":1}`))
	f.Add([]byte(`{"at":"2026-11-21 08:00:00.5+01:00","ts":"2026-11-21t08:00:00z"}`))
	f.Add([]byte(`{"at":"0000-12-31T23:59:59Z","ts":253402300800000}`))
	f.Add([]byte(`{"x":1e140,"ts":1}`))
	f.Add([]byte(`{"uid":"\ud800x","ts":1}`))
	f.Add([]byte(`{"uid":"\udc00\ud800\u0041\\ud800\ud83d\ude00\ud83d","ts":1}`))
	f.Add([]byte(`{"\ud800":"x","uid":"\\\udbff\udfff","ts":1}`))
	f.Add([]byte(`{"x":-1.0000000000000001e140,"ts":1}`))
	f.Add([]byte(`{"uid":"a","ts":1,"uid":"b"}`))
	f.Add([]byte(`{"uid":"a","ts":1,"u\u0069d":"b","other":1,"other":2}`))
	defs, err := Parse("d.yaml", []byte(`project: d
entities: [{name: user, join_keys: [uid]}]
sources:
  - {name: s, topic: s, event_time: ts, schema: {uid: string, n: int, x: float, ok: bool, at: timestamp, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: c, agg: count}]}
`))
	if err != nil {
		f.Fatal(err)
	}
	src := defs.Source("s")
	f.Fuzz(func(t *testing.T, b []byte) {
		var a, o Event
		e1 := src.DecodeJSON(b, &a)
		e2 := src.referenceDecodeJSON(b, &o)
		if (e1 == nil) != (e2 == nil) {
			t.Fatalf("DecodeJSON: %v, reference: %v, on %q", e1, e2, b)
		}
		if e1 != nil {
			r1, r2 := e1.(*DecodeError).Reason, e2.(*DecodeError).Reason
			if r1 != r2 {
				t.Fatalf("DecodeJSON refused for %s, the reference for %s, on %q", r1, r2, b)
			}
			return
		}
		for i := range a.Fields {
			if a.Fields[i] != o.Fields[i] {
				t.Fatalf("field %d: DecodeJSON %v, reference %v, on %q", i, a.Fields[i], o.Fields[i], b)
			}
		}
	})
}

// referenceDecodeJSON is the first DecodeJSON, kept as the reference: it
// decodes one JSON object into ev, one value per schema field, in
// schema order. Missing and null fields are null; fields the schema does not
// declare are ignored. A string field takes a JSON string; int, a JSON
// integer; float, any JSON number; bool, true or false; timestamp, an RFC 3339
// string or integer epoch milliseconds. ev.Time is the event-time field. The
// error is a *DecodeError.
func (s *Source) referenceDecodeJSON(data []byte, ev *Event) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		msg := "not a JSON object"
		if err != nil {
			msg = err.Error()
		}
		return &DecodeError{Reason: ReasonInvalidJSON, Msg: msg}
	}
	keys := referenceKeys(data)
	ev.Fields = ev.Fields[:0]
	for _, f := range s.Schema {
		if keys[f.Name] > 1 {
			return &DecodeError{Reason: ReasonSchema, Field: f.Name, Msg: "the key is given twice"}
		}
		v, err := referenceValue(obj[f.Name], f.Type)
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

// referenceKeys counts the keys of a JSON object, valid JSON.
func referenceKeys(data []byte) map[string]int {
	dec := json.NewDecoder(bytes.NewReader(data))
	keys := map[string]int{}
	if _, err := dec.Token(); err != nil { // {
		return keys
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return keys
		}
		keys[k.(string)]++
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

var jsonNull = []byte("null")

func referenceValue(raw json.RawMessage, t Type) (Value, error) {
	if len(raw) == 0 || bytes.Equal(raw, jsonNull) {
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
		if referenceIsNumber(raw) {
			i, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return Null, fmt.Errorf("%s is not an integer in the int64 range", raw)
			}
			return Int(i), nil
		}
	case TypeFloat:
		if referenceIsNumber(raw) {
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil || math.Abs(f) > 1e140 {
				return Null, fmt.Errorf("%s is out of range", raw)
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
		return referenceTimestamp(raw)
	}
	return Null, fmt.Errorf("want %s, got %s", t, referenceKind(raw))
}

func referenceTimestamp(raw json.RawMessage) (Value, error) {
	if referenceIsNumber(raw) {
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return Null, fmt.Errorf("%s is not integer epoch milliseconds", raw)
		}
		return referenceInRange(time.UnixMilli(ms))
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return Null, fmt.Errorf("want timestamp (RFC 3339 string or epoch milliseconds), got %s", referenceKind(raw))
	}
	// RFC 3339 allows a lower-case t and z, and a space for the t.
	upper := []byte(s)
	for i, c := range upper {
		if c >= 'a' && c <= 'z' {
			upper[i] = c - 'a' + 'A'
		}
	}
	if len(upper) > 10 && upper[10] == ' ' {
		upper[10] = 'T'
	}
	t, err := time.Parse(time.RFC3339Nano, string(upper))
	if err != nil {
		return Null, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return referenceInRange(t)
}

// referenceInRange returns t's timestamp if t is in years 1 to 9999 UTC.
func referenceInRange(t time.Time) (Value, error) {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return Null, fmt.Errorf("%v is outside years 1 to 9999", t)
	}
	return Timestamp(t.UnixMilli()), nil
}

// isNumber reports whether raw, a valid JSON value, is a number.
func referenceIsNumber(raw json.RawMessage) bool {
	return raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')
}

func referenceKind(raw json.RawMessage) string {
	switch {
	case raw[0] == '"':
		return "a string"
	case raw[0] == '{':
		return "an object"
	case raw[0] == '[':
		return "an array"
	case raw[0] == 't' || raw[0] == 'f':
		return "a boolean"
	case referenceIsNumber(raw):
		return "the number " + string(raw)
	}
	return "invalid JSON"
}
