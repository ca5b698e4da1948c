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

	"github.com/quiver-ml/quiver/drift"
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
	var cols []offline.Column
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
		if cols == nil {
			cols, meta = c, m
		} else if !slices.Equal(c, cols) || m[MetaFeatures] != meta[MetaFeatures] || m[MetaSpine] != meta[MetaSpine] {
			return 0, fmt.Errorf("merge: %s has other columns or comes from another spine than %s", in, inputs[0])
		}
		rows = append(rows, r...)
	}
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
	cols = slices.Delete(slices.Clone(cols), at, at+1)
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
	defer os.Remove(f.Name())
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
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	if err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	return len(rows), drift.WriteProfile(out+".profile.json", profile(cols, len(rows), func(r, c int) features.Value { return rows[r][c] }, idx))
}

// checkOut checks, before any work, that a dataset can be written to path:
// its directory exists and takes new files.
func checkOut(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-dataset-*")
	if err != nil {
		if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
			return fmt.Errorf("--out %q: no directory %s", path, dir)
		}
		return fmt.Errorf("--out %q: cannot write in %s: %w", path, dir, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}
