package backfill

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// onDemand computes a service's on-demand features for every row, from
// the row's service features and, as the request context, the row, which
// has every column the expressions read (Dataset checks). A failed
// expression is null, as online, where the data is to blame (a null
// input, say); a spine column of the wrong type is an error naming the
// first row it fails on.
func onDemand(p *plan, sp *spine, values *table) error {
	svc := p.service
	first := len(p.outputs) - len(svc.OnDemand)
	// Rows are independent: a chunk per core.
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	chunk := (sp.len() + workers - 1) / workers
	blamed := make([]error, workers) // each chunk's first
	for w, lo := 0, 0; lo < sp.len(); w, lo = w+1, lo+chunk {
		wg.Go(func() {
			in := make([]features.Value, 0, len(p.outputs))
			out := make([]features.Value, len(svc.OnDemand))
			// The request context: the whole row, as serve passes a
			// request's whole context (an expression may test has() or
			// size(), which RequestKeys does not list).
			cols := sp.cols
			if sp.sharded {
				cols = cols[:len(cols)-1] // SpineRowColumn is not the spine's
			}
			request := make(map[string]any, len(cols))
			for r := lo; r < min(lo+chunk, sp.len()); r++ {
				in = values.row(in[:0], r)[:first]
				for j, c := range cols {
					// Numbers are doubles, as in a JSON request online.
					if v := sp.table.get(r, j); v.Type() == features.TypeInt {
						request[c.Name] = float64(v.Int())
					} else {
						request[c.Name] = v.Any()
					}
				}
				if err := svc.EvalOnDemand(in, request, out); err != nil {
					if oe := features.RequestBlamed(err); oe != nil {
						blamed[w] = &SpineError{File: sp.path, Row: sp.fileRow(r), Err: errors.New(oe.Blame("column ") + sp.whyText(oe.Request))}
						return
					}
				}
				for k, v := range out {
					values.set(r, first+k, v)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range blamed {
		if err != nil {
			return err
		}
	}
	// An expression's type is what CEL checks it to be; when it depends on
	// the request (dynamic), its values show it: the first non-null one
	// decides, and ints count as floats.
	for j := first; j < len(p.outputs); j++ {
		typ := svc.OnDemand[j-first].Type()
		for r := range values.rows() {
			t := values.get(r, j).Type()
			joined, ok := joinTypes(typ, t)
			if !ok {
				return fmt.Errorf("on-demand feature %s gives both %s and %s values", p.outputs[j].name, typ, t)
			}
			typ = joined
		}
		if typ == features.TypeNull {
			typ = features.TypeFloat
		}
		p.outputs[j].typ = typ
	}
	return nil
}

// whyText says why the columns of blamed values that read as numbers were
// read as text: the first cell of each that is not a number, as the spine's
// columns are typed; "" if none of them is such a column.
func (s *spine) whyText(blamed map[string]any) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(blamed)) {
		str, ok := blamed[k].(string)
		if _, err := strconv.ParseFloat(str, 64); !ok || err != nil {
			continue
		}
		j := index(s.cols, k)
		fmt.Fprintf(&b, "; column %s is text, as not all of its cells are numbers", k)
		for r, c := range s.table.strs[j] {
			var g typeGuess
			if g.see(c); c != "" && g.typ() == features.TypeString {
				fmt.Fprintf(&b, " (row %d: %q)", s.fileRow(r), clip(c, 64))
				break
			}
		}
	}
	return b.String()
}

// joinTypes returns the type of a column of values of type a and of type
// b, TypeNull standing for no value: ints count as floats. It reports
// false if no type holds both.
func joinTypes(a, b features.Type) (features.Type, bool) {
	switch {
	case a == b || b == features.TypeNull || a == features.TypeFloat && b == features.TypeInt:
		return a, true
	case a == features.TypeNull || a == features.TypeInt && b == features.TypeFloat:
		return b, true
	}
	return a, false
}

// The key/value metadata of a dataset file.
const (
	MetaSpine    = "quiver.spine"    // the spine's file name
	MetaFeatures = "quiver.features" // the feature columns, comma-separated
	// MetaSpineRows is the whole spine's row count, in a shard's dataset.
	MetaSpineRows = "quiver.spine_rows"
	// MetaDynamic lists, comma-separated, a shard's on-demand columns
	// whose expression's type depends on the request, so that their values
	// decide it: a shard where they are all null cannot tell it, and Merge
	// takes the other shards'.
	MetaDynamic = "quiver.dynamic"
	// MetaRun identifies, in a shard's dataset, the run it is a shard of:
	// a hash of the spine's bytes, the features' definitions (their
	// fingerprints, on-demand expressions), --inclusive,
	// --timestamp-column and the event log's marks (--log-marks). Merge
	// takes the shards of one run only.
	MetaRun = "quiver.run"
	// MetaRunParts is, in a shard's dataset, the hashes MetaRun is made
	// of, space-separated name=hash: spine, definitions, flags, build and,
	// with --log-marks, log-marks. Merge names those that differ.
	MetaRunParts = "quiver.run_parts"
	// MetaShard is, in a shard's dataset, which it is: i/n (--shard), by
	// which Merge names a shard missing or given twice.
	MetaShard = "quiver.shard"
)

// writeDataset writes the spine's columns, then the features, in the
// spine's row order, to a temporary file beside path, and returns its
// name: publish puts it in place with its profile. Should it fail or be
// cancelled, it leaves nothing.
func writeDataset(ctx context.Context, path string, sp *spine, p *plan, values *table, groupRows int, prog Progress) (tmp string, err error) {
	cols := slices.Clone(sp.cols)
	for _, o := range p.outputs {
		cols = append(cols, offline.Column{Name: o.name, Type: o.typ})
	}
	f, err := createTemp(path)
	if err != nil {
		return "", fmt.Errorf("write dataset: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var names, dynamic []string
	for _, o := range p.outputs {
		names = append(names, o.name)
		if o.dynamic {
			dynamic = append(dynamic, o.name)
		}
	}
	prog.Step("writing the dataset", int64(sp.len())) // a fixed name: it labels a metric
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		err = writeCSV(ctx, bw, cols, sp, values, prog)
	} else {
		meta := map[string]string{MetaSpine: filepath.Base(sp.path), MetaFeatures: strings.Join(names, ",")}
		if sp.sharded {
			meta[MetaRun] = sp.run
			meta[MetaRunParts] = sp.runParts
			meta[MetaShard] = sp.shard.String()
			meta[MetaSpineRows] = strconv.Itoa(sp.spineRows)
			if len(dynamic) > 0 {
				meta[MetaDynamic] = strings.Join(dynamic, ",")
			}
		}
		err = writeParquet(ctx, bw, cols, sp, values, meta, groupRows, prog)
	}
	if err != nil {
		return "", fmt.Errorf("write dataset: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("write dataset: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// publish puts the dataset written to the temporary file tmp in place at
// out, with its profile prof at out + ".profile.json": the profile is
// written to a temporary file too, then renamed into place before the
// dataset, so that a dataset is never without its profile. A part of a
// dataset (inParts) has no profile: prof is nil. Should it fail, it
// removes both temporary files.
func publish(tmp, out string, prof *drift.Profile) (err error) {
	profTmp := tmp + ".profile.json"
	defer func() {
		if err != nil {
			os.Remove(profTmp)
			os.Remove(tmp)
		}
	}()
	if prof != nil {
		if err := drift.WriteProfile(profTmp, *prof); err != nil {
			return err
		}
		if err := os.Rename(profTmp, out+".profile.json"); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write dataset: %w", err)
	}
	return nil
}

func writeParquet(ctx context.Context, w io.Writer, cols []offline.Column, sp *spine, values *table, meta map[string]string, groupRows int, prog Progress) error {
	pw, err := offline.NewWriter(w, cols, meta)
	if err != nil {
		return err
	}
	// Row groups are encoded one per core at once, then committed in
	// order.
	groups := make([]*rowGroup, runtime.GOMAXPROCS(0))
	for first := 0; first < sp.len(); first += len(groups) * groupRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		var g errgroup.Group
		n := 0
		for ; n < len(groups) && first+n*groupRows < sp.len(); n++ {
			if groups[n] == nil {
				groups[n] = &rowGroup{Group: pw.Group()}
			}
			rg, lo := groups[n], first+n*groupRows
			g.Go(func() error { return rg.write(cols, sp, values, lo, min(lo+groupRows, sp.len())) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, rg := range groups[:n] {
			if err := rg.Commit(); err != nil {
				return err
			}
		}
		prog.Add(int64(min(sp.len()-first, n*groupRows)))
	}
	return pw.Close()
}

// rowGroupRows is the rows of a dataset's row group.
const rowGroupRows = 64 << 10

// rowGroup is a row group of a dataset being written, and the rows it is
// written from, reused for the next.
type rowGroup struct {
	*offline.Group
	buf  []features.Value
	rows [][]features.Value
}

// write encodes the dataset's rows lo to hi: the spine's columns, then the
// features.
func (g *rowGroup) write(cols []offline.Column, sp *spine, values *table, lo, hi int) error {
	g.buf = slices.Grow(g.buf[:0], (hi-lo)*len(cols))
	g.rows = g.rows[:0]
	for r := lo; r < hi; r++ {
		at := len(g.buf)
		g.buf = values.row(sp.table.row(g.buf, r), r)
		g.rows = append(g.rows, g.buf[at:len(g.buf):len(g.buf)])
	}
	return g.Write(g.rows)
}

// writeCSV writes the dataset's rows as CSV (csvWriter).
func writeCSV(ctx context.Context, w io.Writer, cols []offline.Column, sp *spine, values *table, prog Progress) error {
	cw, err := newCSVWriter(w, cols)
	if err != nil {
		return err
	}
	rows := [][]features.Value{make([]features.Value, 0, len(cols))}
	for r := range sp.len() {
		if r%rowGroupRows == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			prog.Add(int64(min(rowGroupRows, sp.len()-r)))
		}
		rows[0] = values.row(sp.table.row(rows[0][:0], r), r)
		if err := cw.Write(rows); err != nil {
			return err
		}
	}
	return cw.Close()
}

// rowWriter writes a dataset's rows: an offline.Writer, or a csvWriter.
type rowWriter interface {
	Write(rows [][]features.Value) error
	Close() error
}

// csvWriter writes a header, then rows: nulls empty, timestamps RFC 3339,
// numbers as Go formats them, for tools without a Parquet reader.
type csvWriter struct {
	w   *csv.Writer
	rec []string
}

func newCSVWriter(w io.Writer, cols []offline.Column) (*csvWriter, error) {
	cw := &csvWriter{w: csv.NewWriter(w), rec: make([]string, len(cols))}
	for j, c := range cols {
		cw.rec[j] = c.Name
	}
	return cw, cw.w.Write(cw.rec)
}

func (cw *csvWriter) Write(rows [][]features.Value) error {
	for _, row := range rows {
		for j, v := range row {
			cw.rec[j] = csvCell(v)
		}
		if err := cw.w.Write(cw.rec); err != nil {
			return err
		}
	}
	return nil
}

// Close writes what is buffered.
func (cw *csvWriter) Close() error {
	cw.w.Flush()
	return cw.w.Error()
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
		return v.Time().Format(time.RFC3339Nano)
	}
	return ""
}

// profile profiles the columns idx of a table of rows rows, its values
// given by value.
func profile(cols []offline.Column, rows int, value func(r, c int) features.Value, idx []int) drift.Profile {
	prof := drift.Profile{Rows: rows, Features: make([]drift.FeatureProfile, len(idx))}
	var g errgroup.Group // features are independent: one per core at once
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, o := range idx {
		g.Go(func() error {
			prof.Features[i] = featureProfile(cols[o], rows, func(r int) features.Value { return value(r, o) })
			return nil
		})
	}
	g.Wait()
	return prof
}

// featureProfile profiles a column of rows rows, its values given by value.
func featureProfile(col offline.Column, rows int, value func(r int) features.Value) drift.FeatureProfile {
	var pr profiler
	for r := range rows {
		pr.add(value(r))
	}
	return pr.profile(col)
}

// profiler gathers a column's values for its profile.
type profiler struct {
	nums  []float64
	cats  map[string]int
	nulls int
}

func (pr *profiler) add(v features.Value) {
	switch {
	case v.IsNull():
		pr.nulls++
	case v.Type() == features.TypeInt || v.Type() == features.TypeTimestamp:
		pr.nums = append(pr.nums, float64(v.Int()))
	case v.Type() == features.TypeFloat:
		// -0 as 0: the two compare equal, and the order values come in
		// (a merge's) would choose which one an edge prints.
		pr.nums = append(pr.nums, v.Float()+0)
	default:
		if pr.cats == nil {
			pr.cats = map[string]int{}
		}
		if v.Type() == features.TypeBool {
			pr.cats[strconv.FormatBool(v.Bool())]++
		} else {
			pr.cats[v.Str()]++
		}
	}
}

// profile returns the profile of the column col of the values added.
func (pr *profiler) profile(col offline.Column) drift.FeatureProfile {
	if len(pr.cats) > 0 {
		return drift.CategoryProfile(col.Name, col.Type.String(), pr.cats, pr.nulls)
	}
	return drift.NumberProfile(col.Name, col.Type.String(), pr.nums, pr.nulls)
}
