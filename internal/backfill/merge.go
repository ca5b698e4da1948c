package backfill

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// Merge joins datasets built as shards of one spine (DatasetConfig.Shard),
// in any order, into out and its profile: the spine's rows in the spine's
// order, without the shards' SpineRowColumn. It returns the rows written.
func Merge(out string, inputs []string) (int, error) {
	if len(inputs) == 0 {
		return 0, errors.New("merge: no inputs")
	}
	if !strings.EqualFold(filepath.Ext(out), ".parquet") {
		return 0, fmt.Errorf("merge: --out %q: want a .parquet file", out)
	}
	if err := checkOut(out); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	for _, in := range inputs {
		if sameFile(out, in) {
			return 0, fmt.Errorf("merge: --out %q is the shard %s: it would be overwritten", out, in)
		}
	}
	var types *shardColumns
	var rows [][]features.Value
	var meta map[string]string
	for _, in := range inputs {
		c, r, m, err := offline.ReadFile(in)
		if err != nil {
			return 0, err
		}
		if m[MetaFeatures] == "" {
			return 0, fmt.Errorf("merge: %s is not a dataset (no %s metadata)", in, MetaFeatures)
		}
		if types == nil {
			types, meta = newShardColumns(in, c, m), m
		} else if m[MetaFeatures] != meta[MetaFeatures] || m[MetaSpine] != meta[MetaSpine] {
			return 0, fmt.Errorf("merge: %s comes from another spine or has other features than %s", in, inputs[0])
		}
		if err := types.add(in, c, r); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
		rows = append(rows, r...)
	}
	cols := types.columns()
	at := index(cols, SpineRowColumn)
	if at < 0 {
		return 0, fmt.Errorf("merge: %s is not a shard (no %s column)", inputs[0], SpineRowColumn)
	}
	slices.SortFunc(rows, func(a, b []features.Value) int { return cmp.Compare(a[at].Int(), b[at].Int()) })
	if want := meta[MetaSpineRows]; want != strconv.Itoa(len(rows)) {
		return 0, fmt.Errorf("merge: %d rows, the spine has %s: give every shard once", len(rows), want)
	}
	for i := range rows {
		if rows[i][at].Int() != int64(i) {
			return 0, fmt.Errorf("merge: spine row %d is missing or repeated: give every shard once", i)
		}
		rows[i] = slices.Delete(rows[i], at, at+1)
	}
	cols = slices.Delete(cols, at, at+1)
	var idx []int
	for name := range strings.SplitSeq(meta[MetaFeatures], ",") {
		if i := index(cols, name); i >= 0 {
			idx = append(idx, i)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".tmp-dataset-*")
	if err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := offline.NewWriter(bw, cols, meta)
	if err == nil {
		err = w.Write(rows)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, fmt.Errorf("merge: %w", err)
	}
	prof := profile(cols, len(rows), func(r, c int) features.Value { return rows[r][c] }, idx)
	if err := publish(f.Name(), out, prof); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	return len(rows), nil
}

// shardColumns finds the columns of a merged dataset from its shards': the
// same in each, but for an on-demand feature whose values decide its type
// (MetaDynamic), which takes the type of the shards where it has values,
// as onDemand decides it in a dataset built at once.
type shardColumns struct {
	first   string // the first shard
	cols    []offline.Column
	from    []string // per column, the shard its type is from
	dynamic []bool   // per column, whether its values decide its type
}

// newShardColumns starts from the columns cols and metadata meta of the
// shard in.
func newShardColumns(in string, cols []offline.Column, meta map[string]string) *shardColumns {
	ct := &shardColumns{first: in, cols: slices.Clone(cols), from: make([]string, len(cols)), dynamic: make([]bool, len(cols))}
	dynamic := strings.Split(meta[MetaDynamic], ",")
	for j, c := range cols {
		ct.from[j] = in
		if ct.dynamic[j] = slices.Contains(dynamic, c.Name); ct.dynamic[j] {
			ct.cols[j].Type = features.TypeNull // until a shard's values show it
		}
	}
	return ct
}

// add takes the columns cols and rows of the shard in.
func (ct *shardColumns) add(in string, cols []offline.Column, rows [][]features.Value) error {
	if !slices.EqualFunc(cols, ct.cols, func(a, b offline.Column) bool { return a.Name == b.Name }) {
		return fmt.Errorf("%s has columns %s, %s has %s: give shards of one dataset", in, names(cols), ct.first, names(ct.cols))
	}
	for j, c := range cols {
		typ, ok := c.Type, c.Type == ct.cols[j].Type
		if ct.dynamic[j] {
			if allNull(rows, j) {
				continue // its type says nothing
			}
			typ, ok = joinTypes(ct.cols[j].Type, c.Type)
		}
		if !ok {
			return fmt.Errorf("column %q is %s in %s but %s in %s", c.Name, ct.cols[j].Type, ct.from[j], c.Type, in)
		}
		if typ != ct.cols[j].Type { // c's: joinTypes gives one of the two
			ct.cols[j], ct.from[j] = c, in
		}
	}
	return nil
}

// columns returns the merged dataset's columns; a column null in every
// shard is a double, as onDemand types it.
func (ct *shardColumns) columns() []offline.Column {
	for j := range ct.cols {
		if ct.cols[j].Type == features.TypeNull {
			ct.cols[j].Type = features.TypeFloat
		}
	}
	return ct.cols
}

// allNull reports whether column j of rows is null in every row.
func allNull(rows [][]features.Value, j int) bool {
	for _, r := range rows {
		if !r[j].IsNull() {
			return false
		}
	}
	return true
}

// checkOut checks, before any work, that a dataset and its profile can be
// written to path: neither is a directory, and its directory, made if
// missing, takes new files.
func checkOut(path string) error {
	if isDir(path) {
		return fmt.Errorf("--out %q is a directory: want a file in it", path)
	}
	if prof := path + ".profile.json"; isDir(prof) {
		return fmt.Errorf("--out %q: its profile %s is a directory", path, prof)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %q: no directory %s: %w", path, dir, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-dataset-*")
	if err != nil {
		return fmt.Errorf("--out %q: cannot write in %s: %w", path, dir, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// isDir reports whether path is a directory.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// sameFile reports whether paths a and b are one existing file.
func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}
