package backfill

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// TestProfileOrder: a column's profile is the same whatever the order of
// its values, as Merge reads them shard by shard: zeros of both signs,
// ties among categories, nulls.
func TestProfileOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var nums, cats []features.Value
	for i := range 500 {
		switch i % 5 {
		case 0:
			nums = append(nums, features.Float(math.Copysign(0, -1)))
		case 1:
			nums = append(nums, features.Float(0))
		case 2:
			nums = append(nums, features.Null)
		default:
			nums = append(nums, features.Float(float64(rng.IntN(7)-3)))
		}
		cats = append(cats, features.String(string(rune('a'+rng.IntN(30)))))
	}
	for _, c := range []struct {
		col  offline.Column
		vals []features.Value
	}{
		{offline.Column{Name: "n", Type: features.TypeFloat}, nums},
		{offline.Column{Name: "c", Type: features.TypeString}, cats},
	} {
		var want string
		for range 20 {
			var pr profiler
			for _, v := range c.vals {
				pr.add(v)
			}
			b, err := json.Marshal(pr.profile(c.col))
			if err != nil {
				t.Fatal(err)
			}
			if want == "" {
				want = string(b)
			} else if string(b) != want {
				t.Fatalf("%s: profile %s, in another order %s", c.col.Name, b, want)
			}
			rng.Shuffle(len(c.vals), func(i, j int) { c.vals[i], c.vals[j] = c.vals[j], c.vals[i] })
		}
	}
}
