package drift

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// TestSelectRanks checks selectRanks against a sort, on random values with
// many repeats, NaNs, signed zeros and runs already in order.
func TestSelectRanks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		n := 1 + rng.IntN(3000)
		s := make([]float64, n)
		distinct := 1 + rng.IntN(n)
		for i := range s {
			switch rng.IntN(40) {
			case 0:
				s[i] = math.NaN()
			case 1:
				s[i] = math.Copysign(0, -1)
			case 2:
				s[i] = math.Inf(1 - 2*rng.IntN(2))
			default:
				s[i] = float64(rng.IntN(distinct)) - float64(distinct)/2
			}
		}
		if trial%5 == 0 { // sorted or reversed: the pivots' worst shapes
			slices.Sort(s)
			if trial%10 == 0 {
				slices.Reverse(s)
			}
		}
		var ranks []int
		for range rng.IntN(12) {
			ranks = append(ranks, rng.IntN(n))
		}
		ranks = slices.Compact(slices.Sorted(slices.Values(ranks)))
		want := slices.Clone(s)
		slices.Sort(want)
		got := slices.Clone(s)
		selectRanks(got, ranks)
		for _, k := range ranks {
			if g, w := got[k], want[k]; g != w && !(math.IsNaN(g) && math.IsNaN(w)) {
				t.Fatalf("trial %d: rank %d of %d: %v, a sort gives %v", trial, k, n, g, w)
			}
		}
		slices.Sort(got)
		for i := range got {
			if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
				t.Fatalf("trial %d: selectRanks changed the values: %v at %d, want %v", trial, got[i], i, want[i])
			}
		}
	}
}

// TestNumberProfile checks deciles and bin counts on values known in
// advance.
func TestNumberProfile(t *testing.T) {
	var nums []float64
	for i := range 1000 {
		nums = append(nums, float64((i*7919)%1000)) // 0..999, shuffled
	}
	fp := NumberProfile("x", "float", nums, 10)
	wantEdges := []float64{100, 200, 300, 400, 500, 600, 700, 800, 900}
	if !slices.Equal(fp.Edges, wantEdges) {
		t.Errorf("edges %v, want %v", fp.Edges, wantEdges)
	}
	for i, c := range fp.Counts {
		if c != 100 {
			t.Errorf("bin %d holds %d values, want 100", i, c)
		}
	}
	if fp.Count != 1000 || fp.Nulls != 10 || fp.NullRate != 10.0/1010 {
		t.Errorf("count %d nulls %d rate %v", fp.Count, fp.Nulls, fp.NullRate)
	}
	// Mostly the minimum: an edge only above it.
	fp = NumberProfile("y", "int", append(slices.Repeat([]float64{5}, 150), make([]float64, 850)...), 0)
	if !slices.Equal(fp.Edges, []float64{5}) || !slices.Equal(fp.Counts, []int{850, 150}) {
		t.Errorf("edges %v counts %v, want [5] and [850 150]", fp.Edges, fp.Counts)
	}
}

// TestNumberProfileNonFinite: a NaN is a missing value, as models and the
// detector read it, so the profile counts it as null and bins the other
// values as without it; infinities are the extreme values, in the outer
// bins, and never an edge, which JSON could not hold.
func TestNumberProfileNonFinite(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	var nums []float64
	for i := range 1000 {
		nums = append(nums, float64(i))
	}
	fp := NumberProfile("x", "float", append(nums, nan, nan, nan), 10)
	if want := []float64{100, 200, 300, 400, 500, 600, 700, 800, 900}; !slices.Equal(fp.Edges, want) ||
		!slices.Equal(fp.Counts, slices.Repeat([]int{100}, 10)) || fp.Count != 1000 || fp.Nulls != 13 || fp.NullRate != 13.0/1013 {
		t.Errorf("1000 numbers, 3 NaNs and 10 nulls: edges %v counts %v count %d nulls %d rate %v; want the NaNs as nulls",
			fp.Edges, fp.Counts, fp.Count, fp.Nulls, fp.NullRate)
	}
	// A fifth of -Inf, 200 to 799, a fifth of +Inf.
	nums = slices.Repeat([]float64{-inf}, 200)
	for i := 200; i < 800; i++ {
		nums = append(nums, float64(i))
	}
	fp = NumberProfile("y", "float", append(nums, slices.Repeat([]float64{inf}, 200)...), 0)
	if want := []float64{200, 300, 400, 500, 600, 700}; !slices.Equal(fp.Edges, want) || !slices.Equal(fp.Counts, []int{200, 100, 100, 100, 100, 100, 300}) {
		t.Errorf("infinities: edges %v counts %v; want edges %v, counts [200 100 100 100 100 100 300]", fp.Edges, fp.Counts, want)
	}
	if err := WriteProfile(filepath.Join(t.TempDir(), "profile.json"), Profile{Rows: 1000, Features: []FeatureProfile{fp}}); err != nil {
		t.Errorf("write a profile of infinities: %v", err)
	}
}
