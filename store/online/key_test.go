package online_test

import (
	"math/rand/v2"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/online"
)

// Distinct join-key tuples never share an entity key, whatever their
// separators and escapes. The types follow one schema, (string, int,
// string), as an entity's join keys do.
func TestEntityKeysAreDistinct(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "|", `\`, "b", "1", ""}
	seen := map[string][]features.Value{}
	for range 20_000 {
		var vals []features.Value
		for i := range 1 + rng.IntN(3) {
			if i == 1 {
				vals = append(vals, features.Int(int64(rng.IntN(20)-10)))
				continue
			}
			s := ""
			for range rng.IntN(4) {
				s += alphabet[rng.IntN(len(alphabet))]
			}
			vals = append(vals, features.String(s))
		}
		k, ok := online.AppendEntityKey(nil, vals...)
		if !ok {
			t.Fatalf("%v has no key", vals)
		}
		if prev, dup := seen[string(k)]; dup && !equal(prev, vals) {
			t.Fatalf("%v and %v share the key %q", prev, vals, k)
		}
		seen[string(k)] = vals
	}
}

func equal(a, b []features.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
