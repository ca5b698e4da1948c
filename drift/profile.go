package drift

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"

	"github.com/quiver-ml/quiver/internal/regularfile"
)

// Profile is the reference distribution of a training set: what each
// feature looked like when the model was trained, and optionally what the
// model predicted on it. backfill dataset writes it beside the training set
// (<out>.profile.json); a model version links it from model.yaml.
type Profile struct {
	Rows     int              `json:"rows"`
	Features []FeatureProfile `json:"features"`
	// Output is the distribution of the model's first output over the
	// training set, written by the training job; without it the output is
	// not watched.
	Output *FeatureProfile `json:"output,omitempty"`
}

// FeatureProfile is one feature's distribution: for numbers, counts in bins
// between quantile edges; for strings and booleans, the most frequent
// categories, the rest counted as other.
type FeatureProfile struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Count    int     `json:"count"` // non-null values
	Nulls    int     `json:"nulls"`
	NullRate float64 `json:"null_rate"`
	// Edges are the inner bin edges of a number feature: bin i holds
	// values v with Edges[i-1] <= v < Edges[i]; the first and last bins
	// are open.
	Edges  []float64 `json:"edges,omitempty"`
	Counts []int     `json:"counts,omitempty"` // per bin, len(Edges)+1
	// Categories are the most frequent values of a categorical feature.
	Categories []Category `json:"categories,omitempty"`
	Other      int        `json:"other,omitempty"` // values outside Categories
}

// Category is one value of a categorical feature and how often it occurs.
type Category struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Profile sizes: deciles for numbers, the 20 most frequent categories.
const (
	ProfileBins       = 10
	ProfileCategories = 20
)

// NumberProfile profiles a number feature from its non-null values (which
// it reorders and may overwrite) and how many values were null. A NaN
// counts as null, as models and the detector read it as a missing value;
// infinities are the extreme values, in the outer bins, and never an edge.
func NumberProfile(name, typ string, nums []float64, nulls int) FeatureProfile {
	n := len(nums)
	nums = slices.DeleteFunc(nums, math.IsNaN)
	nulls += n - len(nums)
	fp := FeatureProfile{Name: name, Type: typ, Count: len(nums), Nulls: nulls}
	fp.NullRate = rate(nulls, len(nums)+nulls)
	if len(nums) == 0 {
		return fp
	}
	// The edges are quantiles: only they need to be where a sort would
	// put them.
	ranks := []int{0}
	for i := 1; i < ProfileBins; i++ {
		ranks = append(ranks, i*len(nums)/ProfileBins)
	}
	selectRanks(nums, slices.Compact(ranks))
	for i := 1; i < ProfileBins; i++ {
		e := nums[i*len(nums)/ProfileBins]
		if (len(fp.Edges) == 0 || e > fp.Edges[len(fp.Edges)-1]) && e > nums[0] && !math.IsInf(e, 1) {
			fp.Edges = append(fp.Edges, e)
		}
	}
	fp.Counts = make([]int, len(fp.Edges)+1)
	for _, v := range nums {
		fp.Counts[numberBin(fp.Edges, v)]++
	}
	return fp
}

// CategoryProfile profiles a categorical feature from the count of each
// value and how many values were null: the ProfileCategories most frequent
// values, the rest as other.
func CategoryProfile(name, typ string, counts map[string]int, nulls int) FeatureProfile {
	fp := FeatureProfile{Name: name, Type: typ, Nulls: nulls}
	for v, n := range counts {
		fp.Categories = append(fp.Categories, Category{Value: v, Count: n})
		fp.Count += n
	}
	fp.NullRate = rate(nulls, fp.Count+nulls)
	slices.SortFunc(fp.Categories, func(a, b Category) int {
		return cmp.Or(b.Count-a.Count, cmp.Compare(a.Value, b.Value))
	})
	if len(fp.Categories) > ProfileCategories {
		for _, c := range fp.Categories[ProfileCategories:] {
			fp.Other += c.Count
		}
		fp.Categories = fp.Categories[:ProfileCategories]
	}
	return fp
}

// selectRanks puts at each index of ranks (ascending) the value a sort of
// s would put there, partitioning s around a pivot at a time (a
// quickselect for several ranks at once): for a few ranks, a few passes
// over s rather than a sort's log2(len(s)). Values compare as slices.Sort
// compares them (NaNs first).
func selectRanks(s []float64, ranks []int) {
	// After this many partitions a range is sorted instead, so that
	// unlucky pivots cannot make it quadratic.
	depth := 2 * bits.Len(uint(len(s)))
	var sel func(lo, hi int, ranks []int, depth int)
	sel = func(lo, hi int, ranks []int, depth int) {
		for len(ranks) > 0 {
			if hi-lo <= 32 || depth == 0 {
				slices.Sort(s[lo:hi])
				return
			}
			depth--
			// Three ranges: below the pivot, equal to it, above it.
			p := median(s[lo], s[lo+(hi-lo)/2], s[hi-1])
			lt, i, gt := lo, lo, hi
			for i < gt {
				switch cmp.Compare(s[i], p) {
				case -1:
					s[lt], s[i] = s[i], s[lt]
					lt, i = lt+1, i+1
				case 1:
					gt--
					s[i], s[gt] = s[gt], s[i]
				default:
					i++
				}
			}
			below, _ := slices.BinarySearch(ranks, lt)
			above, _ := slices.BinarySearch(ranks, gt)
			sel(lo, lt, ranks[:below], depth)
			lo, ranks = gt, ranks[above:]
		}
	}
	sel(0, len(s), ranks, depth)
}

// median returns the middle one of three values.
func median(a, b, c float64) float64 {
	if cmp.Less(b, a) {
		a, b = b, a
	}
	if cmp.Less(c, b) {
		b = c
		if cmp.Less(b, a) {
			b = a
		}
	}
	return b
}

func rate(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// numberBin is the bin of v among inner edges: a value on an edge belongs
// to the bin the edge opens.
func numberBin[F float32 | float64](edges []F, v F) int {
	i, found := slices.BinarySearch(edges, v)
	if found {
		i++
	}
	return i
}

// WriteProfile writes p to path as indented JSON, atomically.
func WriteProfile(path string, p Profile) error {
	for _, fp := range append(p.Features, ptrValue(p.Output)...) {
		for _, e := range fp.Edges {
			if math.IsInf(e, 0) || math.IsNaN(e) {
				return fmt.Errorf("profile of %s: edge %v is not finite", fp.Name, e)
			}
		}
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	return os.Rename(tmp, path)
}

func ptrValue[T any](p *T) []T {
	if p == nil {
		return nil
	}
	return []T{*p}
}

// maxProfileBytes bounds a profile file: a profile's bins take a few
// kilobytes per feature.
const maxProfileBytes = 64 << 20

// LoadProfile reads a profile, a regular file of at most 64 MiB, and checks
// that each feature's counts fit its bins.
func LoadProfile(path string) (*Profile, error) {
	b, err := regularfile.Read(path, maxProfileBytes)
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, fp := range append(p.Features, ptrValue(p.Output)...) {
		if err := fp.check(); err != nil {
			return nil, fmt.Errorf("%s: feature %q: %w", path, fp.Name, err)
		}
	}
	return &p, nil
}

func (fp *FeatureProfile) check() error {
	counts := 0
	add := func(n int) error {
		if n < 0 {
			return fmt.Errorf("negative count")
		}
		if counts > math.MaxInt-n { // lest the sum wrap around to the count
			return fmt.Errorf("bins count more than %d values", math.MaxInt)
		}
		counts += n
		return nil
	}
	for _, n := range fp.Counts {
		if err := add(n); err != nil {
			return err
		}
	}
	for _, c := range fp.Categories {
		if err := add(c.Count); err != nil {
			return err
		}
	}
	for i, e := range fp.Edges {
		if math.IsInf(e, 0) || math.IsNaN(e) || i > 0 && e <= fp.Edges[i-1] {
			return fmt.Errorf("edges must be finite and increasing")
		}
	}
	switch {
	case fp.Count < 0 || fp.Nulls < 0 || fp.Other < 0:
		return fmt.Errorf("negative count")
	case len(fp.Categories) > 0 && (len(fp.Edges) > 0 || len(fp.Counts) > 0):
		return fmt.Errorf("both categories and number bins")
	case len(fp.Categories) == 0 && fp.Other > 0:
		return fmt.Errorf("other values without categories")
	case len(fp.Categories) == 0 && len(fp.Counts) != len(fp.Edges)+1 && !(fp.Count == 0 && len(fp.Counts) == 0):
		return fmt.Errorf("%d counts for %d edges (want edges + 1)", len(fp.Counts), len(fp.Edges))
	case counts+fp.Other != fp.Count:
		return fmt.Errorf("bins count %d values, count says %d", counts+fp.Other, fp.Count)
	}
	return nil
}
