package backfill

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// onDemand computes a service's on-demand features for every row, from
// the row's service features and, as the request context, the spine's
// other columns.
func onDemand(p *plan, sp *spine, values [][]features.Value) error {
	svc := p.service
	in := make([]features.Value, len(svc.Features))
	out := make([]features.Value, len(svc.OnDemand))
	first := len(p.outputs) - len(svc.OnDemand)
	for _, o := range svc.OnDemand {
		for _, k := range o.RequestKeys() {
			if index(sp.cols, k) < 0 {
				return fmt.Errorf("on-demand feature %s reads request.%s: the spine has no column %q", o.Name, k, k)
			}
		}
	}
	request := make(map[string]any, len(sp.cols))
	for r, row := range sp.rows {
		copy(in, values[r][:first])
		for j, c := range sp.cols {
			// Numbers are doubles, as in a JSON request online.
			if v := row[j]; v.Type() == features.TypeInt {
				request[c.Name] = float64(v.Int())
			} else {
				request[c.Name] = v.Any()
			}
		}
		// A failed expression (a null input, say) is null, as online.
		_ = svc.EvalOnDemand(in, request, out)
		copy(values[r][first:], out)
	}
	// An expression's type is what CEL checks it to be; when it depends on
	// the request (dynamic), its values show it: the first non-null one
	// decides, and ints count as floats.
	for j := first; j < len(p.outputs); j++ {
		typ := svc.OnDemand[j-first].Type()
		for r := range values {
			t := values[r][j].Type()
			if t == features.TypeNull || t == typ || t == features.TypeInt && typ == features.TypeFloat {
				continue
			}
			if typ == features.TypeNull || typ == features.TypeInt && t == features.TypeFloat {
				typ = t
				continue
			}
			return fmt.Errorf("on-demand feature %s gives both %s and %s values", p.outputs[j].name, typ, t)
		}
		if typ == features.TypeNull {
			typ = features.TypeFloat
		}
		p.outputs[j].typ = typ
	}
	return nil
}

// The key/value metadata of a dataset file.
const (
	MetaSpine    = "quiver.spine"    // the spine's file name
	MetaFeatures = "quiver.features" // the feature columns, comma-separated
)

// writeDataset writes the spine's columns, then the features, in the
// spine's row order, to a temporary file renamed into place.
func writeDataset(path string, sp *spine, p *plan, values [][]features.Value) (err error) {
	cols := slices.Clone(sp.cols)
	for _, o := range p.outputs {
		cols = append(cols, offline.Column{Name: o.name, Type: o.typ})
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-dataset-*")
	if err != nil {
		return fmt.Errorf("write dataset: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var names []string
	for _, o := range p.outputs {
		names = append(names, o.name)
	}
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		err = writeCSV(bw, cols, sp, values)
	} else {
		err = writeParquet(bw, cols, sp, values, map[string]string{MetaSpine: filepath.Base(sp.path), MetaFeatures: strings.Join(names, ",")})
	}
	if err != nil {
		return fmt.Errorf("write dataset: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write dataset: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func writeParquet(w io.Writer, cols []offline.Column, sp *spine, values [][]features.Value, meta map[string]string) error {
	pw, err := offline.NewWriter(w, cols, meta)
	if err != nil {
		return err
	}
	const group = 64 << 10 // rows per row group
	rows := make([][]features.Value, 0, group)
	for r, row := range sp.rows {
		rows = append(rows, append(slices.Clip(row), values[r]...))
		if len(rows) == group || r == len(sp.rows)-1 {
			if err := pw.Write(rows); err != nil {
				return err
			}
			rows = rows[:0]
		}
	}
	return pw.Close()
}

// writeCSV writes a header and the rows: nulls empty, timestamps RFC 3339,
// numbers as Go formats them, for tools without a Parquet reader.
func writeCSV(w io.Writer, cols []offline.Column, sp *spine, values [][]features.Value) error {
	cw := csv.NewWriter(w)
	rec := make([]string, len(cols))
	for j, c := range cols {
		rec[j] = c.Name
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for r, row := range sp.rows {
		for j, v := range append(slices.Clip(row), values[r]...) {
			rec[j] = csvCell(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvCell(v features.Value) string {
	switch v.Type() {
	case features.TypeString:
		return v.Str()
	case features.TypeInt:
		return strconv.FormatInt(v.Int(), 10)
	case features.TypeFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case features.TypeBool:
		return strconv.FormatBool(v.Bool())
	case features.TypeTimestamp:
		return time.UnixMilli(v.Int()).UTC().Format(time.RFC3339Nano)
	}
	return ""
}

// Profile is the reference distribution of a training set's features, what
// drift detectors compare live inputs with.
type Profile struct {
	Rows     int              `json:"rows"`
	Features []FeatureProfile `json:"features"`
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

const (
	profileBins       = 10
	profileCategories = 20
)

// profile profiles the columns idx of rows.
func profile(cols []offline.Column, rows [][]features.Value, idx []int) Profile {
	prof := Profile{Rows: len(rows)}
	for _, o := range idx {
		fp := FeatureProfile{Name: cols[o].Name, Type: cols[o].Type.String()}
		var nums []float64
		cats := map[string]int{}
		for _, row := range rows {
			v := row[o]
			switch {
			case v.IsNull():
				fp.Nulls++
				continue
			case v.Type() == features.TypeInt || v.Type() == features.TypeTimestamp:
				nums = append(nums, float64(v.Int()))
			case v.Type() == features.TypeFloat:
				nums = append(nums, v.Float())
			case v.Type() == features.TypeBool:
				cats[fmt.Sprint(v.Bool())]++
			default:
				cats[v.Str()]++
			}
			fp.Count++
		}
		if len(rows) > 0 {
			fp.NullRate = float64(fp.Nulls) / float64(len(rows))
		}
		if len(nums) > 0 {
			fp.Edges, fp.Counts = bins(nums)
		}
		if len(cats) > 0 {
			for v, n := range cats {
				fp.Categories = append(fp.Categories, Category{Value: v, Count: n})
			}
			slices.SortFunc(fp.Categories, func(a, b Category) int {
				if a.Count != b.Count {
					return b.Count - a.Count
				}
				if a.Value < b.Value {
					return -1
				}
				return 1
			})
			if len(fp.Categories) > profileCategories {
				for _, c := range fp.Categories[profileCategories:] {
					fp.Other += c.Count
				}
				fp.Categories = fp.Categories[:profileCategories]
			}
		}
		prof.Features = append(prof.Features, fp)
	}
	return prof
}

// bins returns the distinct deciles of nums as inner edges, and the count
// of values in each bin.
func bins(nums []float64) ([]float64, []int) {
	slices.Sort(nums)
	var edges []float64
	for i := 1; i < profileBins; i++ {
		e := nums[i*len(nums)/profileBins]
		if (len(edges) == 0 || e > edges[len(edges)-1]) && e > nums[0] {
			edges = append(edges, e)
		}
	}
	counts := make([]int, len(edges)+1)
	for _, v := range nums {
		i, _ := slices.BinarySearch(edges, v)
		if i < len(edges) && edges[i] == v {
			i++ // v belongs to the bin its edge opens
		}
		counts[i]++
	}
	return edges, counts
}

func writeProfile(path string, prof Profile) error {
	for i := range prof.Features {
		for _, e := range prof.Features[i].Edges {
			if math.IsInf(e, 0) || math.IsNaN(e) {
				return fmt.Errorf("profile of %s: edge %v is not finite", prof.Features[i].Name, e)
			}
		}
	}
	b, err := json.MarshalIndent(prof, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	return os.Rename(tmp, path)
}
