package online_test

import (
	"maps"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// FuzzDecodeState: serve decodes records it reads from Redis or the
// changelog. Any bytes either fail to decode or decode to a record that
// encodes back to one with the same offsets and state.
func FuzzDecodeState(f *testing.F) {
	defs, err := features.Load("../../examples/fraud/definitions.yaml")
	if err != nil {
		f.Fatal(err)
	}
	eng, err := features.NewEngine(defs, defs.View("user_txn", 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(online.EncodeState(eng, eng.NewState(), map[int32]int64{0: 7, 3: 1 << 40}))
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, applied, err := online.DecodeState(eng, b)
		if err != nil {
			return
		}
		again := online.EncodeState(eng, st, applied)
		st2, applied2, err := online.DecodeState(eng, again)
		if err != nil {
			t.Fatalf("a re-encoded record does not decode: %v", err)
		}
		if !maps.Equal(applied, applied2) || string(eng.AppendState(nil, st)) != string(eng.AppendState(nil, st2)) {
			t.Fatal("a re-encoded record decodes differently")
		}
	})
}
