package features_test

import (
	"errors"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

func TestEventCodec(t *testing.T) {
	src := parse(t, decodeDefs).Source("s")
	var ev features.Event
	if err := src.DecodeJSON([]byte(`{"uid": "u|1", "n": -7, "x": 0.1, "ok": false, "ts": "2026-11-20T09:00:00.250Z"}`), &ev); err != nil {
		t.Fatal(err)
	}
	var got features.Event
	if err := src.DecodeEvent(src.AppendEvent(nil, &ev), &got); err != nil {
		t.Fatal(err)
	}
	if got.Time != ev.Time || len(got.Fields) != len(ev.Fields) {
		t.Fatalf("decoded %+v, want %+v", got, ev)
	}
	for i := range ev.Fields {
		if !got.Fields[i].Equal(ev.Fields[i]) {
			t.Errorf("field %s = %v, want %v", src.Schema[i].Name, got.Fields[i], ev.Fields[i])
		}
	}

	// Under another version of the definitions: a field renamed, one added,
	// one retyped.
	other := parse(t, `project: d
entities: [{name: user, join_keys: [uid]}]
sources:
  - {name: s, topic: s, event_time: ts, schema: {uid: string, count: int, x: float, ok: bool, ts: timestamp, extra: string}}
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: c, agg: count}]}
`).Source("s")
	if err := other.DecodeEvent(src.AppendEvent(nil, &ev), &got); err != nil {
		t.Fatal(err)
	}
	if got.Fields[0] != features.String("u|1") || !got.Fields[1].IsNull() || !got.Fields[5].IsNull() {
		t.Errorf("under other definitions: %v", got.Fields)
	}
	retyped := parse(t, `project: d
entities: [{name: user, join_keys: [uid]}]
sources:
  - {name: s, topic: s, event_time: ts, schema: {uid: int, ts: timestamp}}
feature_views:
  - {name: v, version: 1, entity: user, source: s, features: [{name: c, agg: count}]}
`).Source("s")
	if err := retyped.DecodeEvent(src.AppendEvent(nil, &ev), &got); !errors.Is(err, features.ErrCorruptEvent) {
		t.Errorf("a field of another type: %v, want ErrCorruptEvent", err)
	}
}

// FuzzDecodeEvent feeds arbitrary bytes to the event decoder: an event of
// the schema's types comes back, or ErrCorruptEvent; never a panic.
func FuzzDecodeEvent(f *testing.F) {
	src := parse(&testing.T{}, decodeDefs).Source("s")
	var ev features.Event
	for _, j := range []string{`{"uid":"u","n":1,"x":2.5,"ok":true,"at":5,"ts":7}`, `{"ts":1}`} {
		if err := src.DecodeJSON([]byte(j), &ev); err != nil {
			f.Fatal(err)
		}
		f.Add(src.AppendEvent(nil, &ev))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev features.Event
		if err := src.DecodeEvent(b, &ev); err != nil {
			if !errors.Is(err, features.ErrCorruptEvent) {
				t.Fatalf("error %v does not match ErrCorruptEvent", err)
			}
			return
		}
		if len(ev.Fields) != len(src.Schema) {
			t.Fatalf("%d fields, want %d", len(ev.Fields), len(src.Schema))
		}
		for i, v := range ev.Fields {
			if !v.IsNull() && v.Type() != src.Schema[i].Type {
				t.Fatalf("field %s is %s", src.Schema[i].Name, v.Type())
			}
		}
	})
}
