package backfill

import (
	"bufio"
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/regularfile"
	"github.com/quiver-ml/quiver/store/offline"
)

// Merge joins datasets built as shards of one spine (DatasetConfig.Shard),
// in any order, into out (.parquet, or .csv) and its profile: the spine's
// rows in the spine's order, without the shards' SpineRowColumn. It returns
// the rows written.
//
// Each shard is in the spine's order, so the shards are merged a row group
// of each at a time: what is held is a row group per shard and, for the
// profile, a feature column per core, not the whole dataset.
func Merge(out string, inputs []string) (n int, err error) {
	return merge(out, inputs, nil)
}

// merge is Merge; with a shard, inputs are the parts of that shard
// (inParts), and out is the shard: it keeps their SpineRowColumn and
// metadata, and holds some of the spine's rows.
func merge(out string, inputs []string, shard *Shard) (n int, err error) {
	keepRows := shard != nil
	if len(inputs) == 0 {
		return 0, errors.New("merge: no inputs")
	}
	csvOut := strings.EqualFold(filepath.Ext(out), ".csv")
	if !csvOut && !strings.EqualFold(filepath.Ext(out), ".parquet") {
		return 0, fmt.Errorf("merge: --out %q: want a .parquet (or .csv) file", out)
	}
	if err := checkOut(out); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	for _, in := range inputs {
		if sameFile(out, in) {
			return 0, fmt.Errorf("merge: --out %q is the shard %s: it would be overwritten", out, in)
		}
		if _, err := regularfile.Check(in); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
	}
	shards := make([]*shardFile, 0, len(inputs))
	defer func() {
		for _, sh := range shards {
			sh.r.Close()
		}
	}()
	var types *shardColumns
	var meta map[string]string
	var rows int64
	var which []string // each input's MetaShard
	for _, in := range inputs {
		r, err := offline.OpenFile(in)
		if err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
		shards = append(shards, &shardFile{path: in, r: r, at: -1})
		m := r.Meta()
		if m[MetaFeatures] == "" {
			return 0, fmt.Errorf("merge: %s is not a dataset (no %s metadata)", in, MetaFeatures)
		}
		if types == nil {
			types, meta = newShardColumns(in, r.Columns(), m), m
		} else if m[MetaFeatures] != meta[MetaFeatures] || m[MetaSpine] != meta[MetaSpine] {
			return 0, fmt.Errorf("merge: %s comes from another spine or has other features than %s", in, inputs[0])
		} else if m[MetaRun] != meta[MetaRun] {
			return 0, fmt.Errorf("merge: %s and %s are shards of different runs, which differ in %s", inputs[0], in, runsDiffer(meta[MetaRunParts], m[MetaRunParts]))
		}
		if err := types.add(in, r); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
		rows += r.NumRows()
		which = append(which, m[MetaShard])
	}
	if !keepRows {
		if err := eachShardOnce(inputs, which); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
	}
	cols := types.columns()
	at := index(cols, SpineRowColumn)
	if at < 0 {
		return 0, fmt.Errorf("merge: %s is not a shard (no %s column)", inputs[0], SpineRowColumn)
	}
	if want := meta[MetaSpineRows]; !keepRows && want != strconv.FormatInt(rows, 10) {
		return 0, fmt.Errorf("merge: %d rows, the spine has %s: give every shard once", rows, want)
	}
	for _, sh := range shards {
		if err := sh.next(at); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
	}
	if !keepRows {
		cols = slices.Delete(cols, at, at+1)
	}
	var idx []int
	for name := range strings.SplitSeq(meta[MetaFeatures], ",") {
		if i := index(cols, name); i >= 0 {
			idx = append(idx, i)
		}
	}
	f, err := createTemp(out)
	if err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w rowWriter
	if csvOut {
		w, err = newCSVWriter(bw, cols)
	} else {
		// The metadata of the dataset, or shard, built at once, so that
		// the two are the same file.
		if keepRows {
			meta = maps.Clone(meta)
			meta[MetaShard] = shard.String()
		} else {
			meta = map[string]string{MetaSpine: meta[MetaSpine], MetaFeatures: meta[MetaFeatures]}
		}
		w, err = offline.NewWriter(bw, cols, meta)
	}
	if err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	var h shardHeap
	for _, sh := range shards {
		if !sh.done() {
			h = append(h, sh)
		}
	}
	heap.Init(&h)
	group := make([][]features.Value, 0, rowGroupRows)
	last := int64(-1) // the spine row written last
	for i := range int(rows) {
		sh := h[0]
		if sh.at <= last || !keepRows && sh.at != last+1 {
			return 0, fmt.Errorf("merge: spine row %d is missing or repeated, or a shard is out of order: give every shard once, as backfill wrote it", min(sh.at, last+1))
		}
		last = sh.at
		row := sh.rows[sh.i]
		if !keepRows {
			row = slices.Delete(row, at, at+1)
		}
		if group = append(group, row); len(group) == rowGroupRows || i == int(rows)-1 {
			if err := w.Write(group); err != nil {
				return 0, fmt.Errorf("merge: %w", err)
			}
			group = group[:0]
		}
		sh.i++
		if err := sh.next(at); err != nil {
			return 0, fmt.Errorf("merge: %w", err)
		}
		if sh.done() {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	if err = w.Close(); err == nil {
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
		return 0, fmt.Errorf("merge: %w", err)
	}
	prof, err := shardProfile(inputs, cols, idx, int(rows))
	if err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	if err := publish(f.Name(), out, &prof); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	return int(rows), nil
}

// eachShardOnce checks, by their MetaShard (which), that inputs are each
// shard of one count once, naming any given twice or missing. Shards of
// older builds, which do not say, are left to the count of rows.
func eachShardOnce(inputs, which []string) error {
	given := map[int]string{}
	count := 0
	for i, w := range which {
		if w == "" {
			return nil
		}
		sh, err := ParseShard(w)
		if err != nil {
			return fmt.Errorf("%s: %s %w", inputs[i], MetaShard, err)
		}
		if count == 0 {
			count = sh.Count
		} else if sh.Count != count {
			return fmt.Errorf("%s is shard %s, and %s one of %d: give the shards of one --shard count", inputs[i], w, inputs[0], count)
		}
		if first, ok := given[sh.Index]; ok {
			return fmt.Errorf("shard %s is given twice: %s and %s", w, first, inputs[i])
		}
		given[sh.Index] = inputs[i]
	}
	var missing []string
	for i := range count {
		if _, ok := given[i]; !ok {
			missing = append(missing, Shard{Index: i, Count: count}.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("shard %s missing: give every shard once", strings.Join(missing, ", "))
	}
	return nil
}

// runParts names, in the words of a message, the parts of MetaRunParts.
var runParts = []struct{ key, says string }{
	{"spine", "the spine's content"},
	{"definitions", "the features' definitions"},
	{"flags", "--inclusive or --timestamp-column"},
	{"build", "the Quiver version that built them"},
	{"log-marks", "the event log's marks (--log-marks)"},
}

// runsDiffer names the parts of two shards' runs (MetaRunParts) that
// differ; of shards of older builds, which do not record them, what may.
func runsDiffer(a, b string) string {
	parse := func(s string) map[string]string {
		m := map[string]string{}
		for f := range strings.FieldsSeq(s) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	pa, pb := parse(a), parse(b)
	var differ []string
	for _, p := range runParts {
		if pa[p.key] != pb[p.key] {
			differ = append(differ, p.says)
		}
	}
	if a == "" || b == "" || len(differ) == 0 {
		return "the spine's content, the features' definitions, --inclusive, --timestamp-column, the event log's marks (--log-marks) or the Quiver version that built them"
	}
	if len(differ) == 1 {
		return differ[0]
	}
	return strings.Join(differ[:len(differ)-1], ", ") + " and " + differ[len(differ)-1]
}

// shardProfile profiles the columns idx of the shards, rows rows in all,
// reading one column of them at a time per core: what it holds is that
// column's values, not the dataset's. A column's profile is the same
// whatever the order of its values.
func shardProfile(shards []string, cols []offline.Column, idx []int, rows int) (drift.Profile, error) {
	prof := drift.Profile{Rows: rows, Features: make([]drift.FeatureProfile, len(idx))}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for k, o := range idx {
		g.Go(func() error {
			var pr profiler
			for _, path := range shards {
				r, err := offline.OpenFile(path, cols[o].Name)
				if err != nil {
					return err
				}
				for grp := range r.RowGroups() {
					vals, err := r.RowGroup(grp)
					if err != nil {
						r.Close()
						return err
					}
					for _, v := range vals {
						pr.add(v[0])
					}
				}
				r.Close()
			}
			prof.Features[k] = pr.profile(cols[o])
			return nil
		})
	}
	return prof, g.Wait()
}

// shardFile is a shard being merged: its current row group, and where it
// is in it.
type shardFile struct {
	path  string
	r     *offline.FileReader
	group int                // the next row group to read
	rows  [][]features.Value // the row group read last
	i     int                // the next of rows
	at    int64              // its spine row; -1 before the first and past the last
}

// next reads the next row group once rows are used up, and sets at to the
// spine row of the next row, checking the shard is in the spine's order.
func (sh *shardFile) next(col int) error {
	for sh.i == len(sh.rows) {
		if sh.group == sh.r.RowGroups() {
			sh.rows, sh.at = nil, -1
			return nil
		}
		rows, err := sh.r.RowGroup(sh.group)
		if err != nil {
			return err
		}
		sh.group, sh.rows, sh.i = sh.group+1, rows, 0
	}
	at := sh.rows[sh.i][col].Int()
	if sh.rows[sh.i][col].IsNull() || at <= sh.at {
		return fmt.Errorf("%s: its %s are not in increasing order: not a shard as backfill writes them", sh.path, SpineRowColumn)
	}
	sh.at = at
	return nil
}

func (sh *shardFile) done() bool { return sh.at < 0 }

// shardHeap orders shards by their next spine row.
type shardHeap []*shardFile

func (h shardHeap) Len() int           { return len(h) }
func (h shardHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h shardHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *shardHeap) Push(x any)        { *h = append(*h, x.(*shardFile)) }
func (h *shardHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
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

// add takes the columns of the shard r, read from in.
func (ct *shardColumns) add(in string, r *offline.FileReader) error {
	cols := r.Columns()
	if !slices.EqualFunc(cols, ct.cols, func(a, b offline.Column) bool { return a.Name == b.Name }) {
		return fmt.Errorf("%s has columns %s, %s has %s: give shards of one dataset", in, names(cols), ct.first, names(ct.cols))
	}
	nulls, err := ct.nullColumns(r)
	if err != nil {
		return err
	}
	for j, c := range cols {
		typ, ok := c.Type, c.Type == ct.cols[j].Type
		if ct.dynamic[j] {
			if nulls[j] {
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

// nullColumns reports, for each dynamic column, whether it is null in every
// row of r; it reads r only if there are such columns.
func (ct *shardColumns) nullColumns(r *offline.FileReader) ([]bool, error) {
	nulls := slices.Clone(ct.dynamic)
	if !slices.Contains(nulls, true) {
		return nulls, nil
	}
	for g := range r.RowGroups() {
		rows, err := r.RowGroup(g)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			for j, v := range row {
				nulls[j] = nulls[j] && v.IsNull()
			}
		}
	}
	return nulls, nil
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

// checkOut checks, before any work, that a dataset and its profile can be
// written to path: a local file, not a URL; neither is a directory, and its directory, made if
// missing, takes new files. It removes the temporary files that a run of
// the same path left when it was killed (staleTemp).
func checkOut(path string) error {
	if scheme, _, ok := strings.Cut(path, "://"); ok && !strings.ContainsAny(scheme, `/\`) {
		return fmt.Errorf("--out %q: want a local file, not a URL: copy the dataset and its profile to %s:// once written", path, scheme)
	}
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
	f, err := createTemp(path)
	if err != nil {
		return fmt.Errorf("--out %q: cannot write in %s: %w", path, dir, errors.Unwrap(err))
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--out %q: %w", path, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix(path)) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// createTemp creates the temporary file a dataset or its profile is
// written to before it is renamed to path: hidden, in path's directory,
// and named after path, so that a later run of the same path finds it
// should this run be killed (checkOut).
func createTemp(path string) (*os.File, error) {
	return os.CreateTemp(filepath.Dir(path), tempPrefix(path)+"*")
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// staleTemp is how long a temporary file named after a dataset must have
// gone unmodified for a run of the same dataset to take it for a killed
// run's and remove it: one being written changes all the time. A killed
// run's file (the size of the dataset, hidden) would otherwise stay for
// good; a job retried within the minute leaves it to the next run.
const staleTemp = time.Minute

// isDir reports whether path is a directory.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// sameFile reports whether paths a and b name one file: the same path, or
// an existing file by two names.
func sameFile(a, b string) bool {
	if absA, err := filepath.Abs(a); err == nil {
		if absB, err := filepath.Abs(b); err == nil && absA == absB {
			return true
		}
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}
