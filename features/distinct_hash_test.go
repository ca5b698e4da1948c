package features

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// Distinct counts store hashes: hashValue must never change. Its
// definition is xxhash64 of the type's byte then the string's bytes (a
// string) or the number's 8 little-endian bytes (-0 as 0).
func TestHashValueIsStable(t *testing.T) {
	ref := func(s string) uint64 {
		d := xxhash.New()
		d.Write([]byte{byte(TypeString)})
		d.WriteString(s)
		return d.Sum64()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if got, want := hashValue(String(string(b))), ref(string(b)); got != want {
			t.Fatalf("hashValue of a %d-byte string = %x, want %x", n, got, want)
		}
	}
	for _, c := range []struct {
		v    Value
		want uint64
	}{
		{String("m042"), ref("m042")},
		{String(strings.Repeat("x", 100)), ref(strings.Repeat("x", 100))},
		{String("m042"), 0x1970c33ea0efed82},
		{Int(7), 0x3663095ddc461a3c},
		{Float(0), 0x72707b1835bd39c5},
		{Float(math.Copysign(0, -1)), 0x72707b1835bd39c5},
	} {
		if got := hashValue(c.v); got != c.want {
			t.Errorf("hashValue(%v) = %#x, want %#x", c.v, got, c.want)
		}
	}
}

// distinctTileBytes bounds a distinct-count tile's encoding, its index
// included, and is near it: a tile of a million values is a dense sketch.
func TestDistinctTileBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var d distinct
	for range 1_000_000 {
		d.add(rng.Uint64())
	}
	n := len(appendVarint(appendDistinct(nil, &d), math.MinInt64))
	if n > distinctTileBytes || n < distinctTileBytes-64 {
		t.Errorf("a dense tile takes %d bytes; distinctTileBytes is %d", n, distinctTileBytes)
	}
}
