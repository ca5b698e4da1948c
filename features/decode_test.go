package features_test

import (
	"errors"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

const decodeDefs = `project: d
entities: [{name: user, join_keys: [uid]}]
sources:
  - {name: s, topic: s, event_time: ts, schema: {uid: string, n: int, x: float, ok: bool, at: timestamp, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: c, agg: count}]}
`

func TestDecodeJSON(t *testing.T) {
	src := parse(t, decodeDefs).Source("s")
	const ts = `"ts": "2026-11-20T09:00:00.250Z"`
	const tsMs = 1795165200250
	for _, tc := range []struct {
		in     string
		want   []features.Value // uid, n, x, ok, at, ts
		reason string
		field  string
	}{
		{in: `{"uid": "u1", "n": 3, "x": 2.5, "ok": true, "at": 1700000000000, ` + ts + `}`,
			want: []features.Value{features.String("u1"), features.Int(3), features.Float(2.5), features.Bool(true), features.Timestamp(1700000000000), features.Timestamp(tsMs)}},
		{in: `{"uid": null, "x": 7, "extra": {"nested": [1]}, "ts": 5}`,
			want: []features.Value{features.Null, features.Null, features.Float(7), features.Null, features.Null, features.Timestamp(5)}},
		{in: `{"at": "2026-11-20T10:00:00+01:00", ` + ts + `}`,
			want: []features.Value{features.Null, features.Null, features.Null, features.Null, features.Timestamp(tsMs - 250), features.Timestamp(tsMs)}},
		{in: `{"at": "2026-11-20 10:00:00+01:00", "ts": "2026-11-20t09:00:00.250z"}`, // RFC 3339 allows both
			want: []features.Value{features.Null, features.Null, features.Null, features.Null, features.Timestamp(tsMs - 250), features.Timestamp(tsMs)}},
		{in: `{"ts": "9999-12-31T23:59:59.999Z"}`,
			want: []features.Value{features.Null, features.Null, features.Null, features.Null, features.Null, features.Timestamp(features.MaxTime)}},
		{in: `{"ts": -62135596800000}`,
			want: []features.Value{features.Null, features.Null, features.Null, features.Null, features.Null, features.Timestamp(features.MinTime)}},
		{in: `{"x": -1e140, ` + ts + `}`,
			want: []features.Value{features.Null, features.Null, features.Float(-1e140), features.Null, features.Null, features.Timestamp(tsMs)}},
		{in: `{"n": -9223372036854775808, ` + ts + `}`,
			want: []features.Value{features.Null, features.Int(-9223372036854775808), features.Null, features.Null, features.Null, features.Timestamp(tsMs)}},
		{in: `{"uid": "u1", "other": 1, "other": 2, ` + ts + `}`, // a key not in the schema may repeat
			want: []features.Value{features.String("u1"), features.Null, features.Null, features.Null, features.Null, features.Timestamp(tsMs)}},
		{in: `{"uid": "u1", ` + ts + `, "uid": "u2"}`, reason: features.ReasonSchema, field: "uid"},
		{in: `{"n": 1, "n": "x", "x": 1, "x": 2, ` + ts + `}`, reason: features.ReasonSchema, field: "n"},
		{in: `{"u\u0069d": "u1", "uid": "u1", ` + ts + `}`, reason: features.ReasonSchema, field: "uid"},
		{in: `not json`, reason: features.ReasonInvalidJSON},
		{in: `[1, 2]`, reason: features.ReasonInvalidJSON},
		{in: `null`, reason: features.ReasonInvalidJSON},
		{in: `{"uid": "u1", ` + ts, reason: features.ReasonInvalidJSON},
		{in: `{"uid": 1, ` + ts + `}`, reason: features.ReasonSchema, field: "uid"},
		{in: `{"n": 1.5, ` + ts + `}`, reason: features.ReasonSchema, field: "n"},
		{in: `{"n": "1", ` + ts + `}`, reason: features.ReasonSchema, field: "n"},
		{in: `{"n": 9223372036854775808, ` + ts + `}`, reason: features.ReasonSchema, field: "n"},
		{in: `{"x": 1e400, ` + ts + `}`, reason: features.ReasonSchema, field: "x"},
		{in: `{"x": -1.5e308, ` + ts + `}`, reason: features.ReasonSchema, field: "x"}, // beyond what sums take exactly
		{in: `{"x": "2.5", ` + ts + `}`, reason: features.ReasonSchema, field: "x"},
		{in: `{"ok": 1, ` + ts + `}`, reason: features.ReasonSchema, field: "ok"},
		{in: `{"at": "yesterday", ` + ts + `}`, reason: features.ReasonSchema, field: "at"},
		{in: `{"at": true, ` + ts + `}`, reason: features.ReasonSchema, field: "at"},
		{in: `{"ts": 253402300800000}`, reason: features.ReasonSchema, field: "ts"}, // year 10000: no date partition names it
		{in: `{"ts": -62135596800001}`, reason: features.ReasonSchema, field: "ts"},
		{in: `{"ts": "0000-06-01T00:00:00Z"}`, reason: features.ReasonSchema, field: "ts"},
		{in: `{"uid": "u1"}`, reason: features.ReasonMissingEventTime, field: "ts"},
		{in: `{"uid": "u1", "ts": null}`, reason: features.ReasonMissingEventTime, field: "ts"},
	} {
		var ev features.Event
		err := src.DecodeJSON([]byte(tc.in), &ev)
		if tc.reason != "" {
			var de *features.DecodeError
			if !errors.As(err, &de) || de.Reason != tc.reason || de.Field != tc.field {
				t.Errorf("%s: error %v, want reason %s on field %q", tc.in, err, tc.reason, tc.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if len(ev.Fields) != len(tc.want) {
			t.Fatalf("%s: %d fields, want %d", tc.in, len(ev.Fields), len(tc.want))
		}
		for i, v := range tc.want {
			if !ev.Fields[i].Equal(v) {
				t.Errorf("%s: field %s = %v, want %v", tc.in, src.Schema[i].Name, ev.Fields[i], v)
			}
		}
		if ev.Time != ev.Fields[5].Int() {
			t.Errorf("%s: Time %d, want the ts field %d", tc.in, ev.Time, ev.Fields[5].Int())
		}
	}
}

// TestDecodeJSONIntEventTime: an event time declared int is epoch
// milliseconds, in the range a timestamp field takes. One in microseconds
// is bad input, not an event of the year 55,000 that would move the
// watermark and that the event log cannot date.
func TestDecodeJSONIntEventTime(t *testing.T) {
	src := parse(t, `project: d
entities: [{name: user, join_keys: [uid]}]
sources:
  - {name: s, topic: s, event_time: ts, schema: {uid: string, ts: int}}
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: c, agg: count}]}
`).Source("s")
	var ev features.Event
	if err := src.DecodeJSON([]byte(`{"uid": "u", "ts": 1700000000000}`), &ev); err != nil || ev.Time != 1700000000000 {
		t.Errorf("milliseconds: time %d, error %v", ev.Time, err)
	}
	for _, in := range []string{`{"uid": "u", "ts": 1700000000000000}`, `{"uid": "u", "ts": -62135596800001}`} {
		var de *features.DecodeError
		if err := src.DecodeJSON([]byte(in), &ev); !errors.As(err, &de) || de.Reason != features.ReasonSchema || de.Field != "ts" {
			t.Errorf("%s: error %v, want reason %s on field ts", in, err, features.ReasonSchema)
		}
	}
}

// FuzzDecodeJSON feeds arbitrary bytes to the event decoder: an event comes
// back with one value of its declared type (or null) per field, or a
// *DecodeError with a known reason; never a panic.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"uid": "u1", "n": 3, "x": 2.5, "ok": true, "at": 1700000000000, "ts": "2026-11-20T09:00:00Z"}`,
		`{"ts": 1}`, `{}`, `[]`, `"s"`, `{"n": 1e5, "ts": -1}`, `{"at": "2026-01-01T00:00:00.123456789-07:00", "ts": 0}`,
	} {
		f.Add([]byte(seed))
	}
	src := parse(&testing.T{}, decodeDefs).Source("s")
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev features.Event
		err := src.DecodeJSON(data, &ev)
		if err != nil {
			var de *features.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			switch de.Reason {
			case features.ReasonInvalidJSON, features.ReasonSchema, features.ReasonMissingEventTime:
			default:
				t.Fatalf("unknown reason %q", de.Reason)
			}
			return
		}
		if len(ev.Fields) != len(src.Schema) {
			t.Fatalf("%d fields, want %d", len(ev.Fields), len(src.Schema))
		}
		for i, v := range ev.Fields {
			if !v.IsNull() && v.Type() != src.Schema[i].Type {
				t.Fatalf("field %s is %s, declared %s", src.Schema[i].Name, v.Type(), src.Schema[i].Type)
			}
		}
		if ev.Time != ev.Fields[src.Field("ts")].Int() {
			t.Fatal("Time is not the event-time field")
		}
	})
}
