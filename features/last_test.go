package features

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// tiledLast is `last` as it was kept before: the latest event of each tile.
// States written then hold one tile per event's tile.
type tiledLast struct{ tiles[lastAcc, *lastAcc] }

func (s *tiledLast) add(tile int64, v Value, o order) {
	if a := s.at(tile); !a.ok || o.after(a.at) {
		*a = lastAcc{v: v, at: o, ok: true}
	}
}

func (s *tiledLast) value(lo int64) Value {
	var best lastAcc
	for _, t := range s.from(lo) {
		if !best.ok || t.a.at.after(best.at) {
			best = t.a
		}
	}
	return best.v
}

// lastSeries, which keeps only the latest event, answers every window as
// the latest event of each tile did, after any events in any order, nulls
// included, and pruned alike; a state of many tiles, written before,
// decodes to the same answers.
func TestLastKeepsLatest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		var got lastSeries
		var want tiledLast
		for e := range rng.IntN(30) {
			o := order{time: rng.Int64N(50), partition: int32(rng.IntN(2)), offset: rng.Int64N(4)}
			v := Null
			if rng.IntN(4) > 0 {
				v = String(fmt.Sprint("v", e))
			}
			tile := o.time / 10
			got.add(tile, v, o)
			want.add(tile, v, o)
			if rng.IntN(8) == 0 { // the window moved on
				lo := tile - rng.Int64N(3)
				got.prune(lo)
				want.prune(lo)
			}
		}
		var old lastSeries
		r := &reader{b: want.tiles.appendTo(nil, func(b []byte, a *lastAcc) []byte {
			b = appendVarint(b, a.at.time)
			b = appendVarint(b, int64(a.at.partition))
			b = appendVarint(b, a.at.offset)
			return appendValue(b, a.v)
		})}
		old.readFrom(r)
		if r.err != nil || len(r.b) > 0 {
			t.Fatalf("round %d: decoding %d tiles: %v, %d bytes left", round, len(want.live), r.err, len(r.b))
		}
		var again lastSeries
		r = &reader{b: got.appendTo(nil)}
		again.readFrom(r)
		if r.err != nil || len(r.b) > 0 {
			t.Fatalf("round %d: decoding its own encoding: %v, %d bytes left", round, r.err, len(r.b))
		}
		for lo := int64(-1); lo <= 6; lo++ {
			w := want.value(lo)
			for name, s := range map[string]*lastSeries{"kept": &got, "decoded from tiles": &old, "decoded": &again} {
				if v := s.value(lo); v != w {
					t.Fatalf("round %d, %s: window from tile %d: %v, want %v", round, name, lo, v, w)
				}
			}
		}
	}
}

// A windowed `last` state holds one value, not one per tile.
func TestLastStateSize(t *testing.T) {
	var s lastSeries
	big := strings.Repeat("x", 10_000)
	for tile := range int64(60) {
		s.add(tile, String(big+fmt.Sprint(tile)), order{time: tile * 10})
	}
	if n := len(s.appendTo(nil)); n > 10_100 {
		t.Errorf("a state after 60 tiles of 10 kB strings takes %d bytes, want one string's", n)
	}
	if v := s.value(59); v.Str() != big+"59" {
		t.Errorf("last = %.10q…, want the latest", v.Str())
	}
}
