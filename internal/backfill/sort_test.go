package backfill

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSortEvents compares sortEvents with a comparison sort on events in
// runs as the log gives them (files of a few partitions, each in order,
// their times overlapping), on runs of every length, and on random order.
func TestSortEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var buf []packedEvent
	for c := range 2000 {
		var es []packedEvent
		n := rng.IntN(300)
		parts := 1 + rng.IntN(5)
		offsets := make([]int64, parts)
		for len(es) < n {
			// A file: one partition's events in a stretch of time, in order.
			p := rng.IntN(parts)
			at := int64(rng.IntN(1000))
			for range rng.IntN(20) {
				if c%10 == 0 {
					at = int64(rng.IntN(1000)) // no order at all
				} else {
					at += int64(rng.IntN(3)) // equal times too
				}
				offsets[p]++
				es = append(es, packedEvent{time: at, partition: int32(p), offset: offsets[p], at: len(es)})
			}
		}
		want := slices.Clone(es)
		slices.SortFunc(want, func(a, b packedEvent) int {
			if a.before(&b) {
				return -1
			}
			if b.before(&a) {
				return 1
			}
			return 0
		})
		buf = sortEvents(es, buf)
		if !slices.Equal(es, want) {
			t.Fatalf("case %d: sorted\n%v\nwant\n%v", c, es, want)
		}
	}
}
