package backfill

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/eventlog"
	"github.com/quiver-ml/quiver/internal/regularfile"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// DatasetConfig is what a training set is built from.
type DatasetConfig struct {
	Definitions     *features.Definitions // required
	Offline         *offline.Dir          // the event log; required
	Spine           string                // a .csv or .parquet file; required
	TimestampColumn string                // the spine's time column; required
	// Features are feature references (view@version:feature or
	// view:feature); Service names a feature service instead. One of the
	// two is required.
	Features []string
	Service  string
	// Out is the file to write: .parquet, or .csv for tools without a
	// Parquet reader; its directory is made if missing. Its profile goes to
	// Out + ".profile.json". Neither may be a directory, nor Out the spine.
	Out string
	// Inclusive counts events at the spine time (te <= t); by default only
	// those before it (te < t), as a model sees the world before the label.
	Inclusive bool
	// MemoryLimit bounds what a dataset holds at once. Half of it is events:
	// entities are split into buckets by hash, their events spilled to
	// TempDir, and the buckets processed one per core at a time. The other
	// half is spine rows and their features' values: a spine that takes
	// more is built in parts (inParts). Default 1 GiB.
	MemoryLimit int64
	// Shard, when Shard.Count > 0, builds only the spine rows whose entity
	// (the first entity's join keys) hashes to the Index-th of Count shards
	// (0-based), for jobs that fan out; Merge joins their outputs, the one
	// shard of 0/1 included. The zero Shard builds the whole spine.
	Shard Shard
	// LogMarks, when set, is a file shared by the jobs of one run (the
	// shards of a dataset): the first to start records there where the
	// event log ends (each source partition's last offset), and every job
	// reads the log only up to it, so that shards started at different
	// times beside a running ingest read one log. Each run needs a file
	// of its own: one left by an earlier run holds that run's log.
	LogMarks string
	TempDir  string       // default os.TempDir()
	Logger   *slog.Logger // nil discards
	Progress Progress     // nil reports nothing

	// partRows is set for a part of inParts: the rows of its row groups,
	// fewer than rowGroupRows, as merging the parts holds one of each. A
	// part has no profile: Merge profiles the parts together.
	partRows int
	// marks is the event log as it was when the run began (LogMarks, or
	// for a part its run's): by source, the last offset of each partition
	// (replay.LogMarks). No event past them is read.
	marks map[string]map[int32]int64
}

// Shard is one slice of a spine: Index of Count, from 0.
type Shard struct{ Index, Count int }

// String is i/n, as --shard and MetaShard write it.
func (s Shard) String() string { return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count) }

// ParseShard parses i/n (String), 0 <= i < n.
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	var sh Shard
	var err1, err2 error
	sh.Index, err1 = strconv.Atoi(i)
	sh.Count, err2 = strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
		return Shard{}, fmt.Errorf("%q: want i/n with 0 <= i < n", s)
	}
	return sh, nil
}

// SpineRowColumn is the column a shard's dataset has beyond the spine's and
// the features: each row's index in the spine, by which Merge restores the
// spine's order (and which it drops).
const SpineRowColumn = "_spine_row"

// Progress hears how far a dataset has come.
type Progress interface {
	// Step starts a step of n units (events read, rows computed); n < 0:
	// unknown. Its name labels a metric: one of a few, never a file's.
	Step(name string, n int64)
	// Add reports units done in the current step; several goroutines may
	// call it at once.
	Add(n int64)
}

// Summary says what a dataset run did.
type Summary struct {
	Rows    int           // spine rows written
	Events  int64         // events read from the log, by every part
	Buckets int           // entity buckets of a part
	Parts   int           // parts the spine was built in; 0: at once
	Elapsed time.Duration // wall time
}

func (c *DatasetConfig) validate() error {
	var errs []error
	if c.Definitions == nil {
		errs = append(errs, errors.New("no definitions"))
	}
	if c.Offline == nil {
		errs = append(errs, errors.New("no offline store"))
	}
	if c.Spine == "" {
		errs = append(errs, errors.New("--spine is required"))
	} else if _, err := regularfile.Check(c.Spine); err != nil {
		errs = append(errs, fmt.Errorf("--spine: %w", err))
	}
	if c.TimestampColumn == "" {
		errs = append(errs, errors.New("--timestamp-column is required"))
	}
	if (len(c.Features) == 0) == (c.Service == "") {
		errs = append(errs, errors.New("give --features or --feature-service (one of them)"))
	}
	ext := strings.ToLower(filepath.Ext(c.Out))
	if ext != ".parquet" && ext != ".csv" {
		errs = append(errs, fmt.Errorf("--out %q: want a .parquet (or .csv) file", c.Out))
	} else if c.Offline != nil && c.Offline.Holds(c.Out) {
		errs = append(errs, fmt.Errorf("--out %q is in the offline store's logs (%s): it would be read as part of them; write it outside events/ and features/", c.Out, c.Offline))
	} else if err := checkOut(c.Out); err != nil {
		errs = append(errs, err)
	} else if sameFile(c.Out, c.Spine) {
		errs = append(errs, fmt.Errorf("--out %q is the spine %s: it would be overwritten", c.Out, c.Spine))
	}
	if c.Shard.Count < 0 || c.Shard.Count > 0 && (c.Shard.Index < 0 || c.Shard.Index >= c.Shard.Count) {
		errs = append(errs, fmt.Errorf("shard %d/%d: want i/n with 0 <= i < n", c.Shard.Index, c.Shard.Count))
	}
	if c.Shard.Count > 0 && ext == ".csv" {
		errs = append(errs, fmt.Errorf("--out %q: a shard's dataset is Parquet, for merge to read", c.Out))
	}
	if c.LogMarks != "" && (sameFile(c.LogMarks, c.Out) || sameFile(c.LogMarks, c.Spine) || c.Offline != nil && c.Offline.Holds(c.LogMarks)) {
		errs = append(errs, fmt.Errorf("--log-marks %q is --out, --spine or in the offline store: give a file of its own", c.LogMarks))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("memory limit %d is negative", c.MemoryLimit))
	}
	return errors.Join(errs...)
}

// output is one feature column of the dataset.
type output struct {
	name    string // <view>__<feature>, or an on-demand feature's name
	typ     features.Type
	dynamic bool // an on-demand feature whose values decide its type
}

// viewJob is one view version the dataset reads.
type viewJob struct {
	view    *features.View
	engine  *features.Engine // of the requested features alone
	source  *features.Source
	keyIdx  []int // schema index of each join key
	entity  *entityJob
	names   []string // the requested features, in the engine's order
	outputs []int    // the dataset output of each
}

// entityJob is one entity whose views the dataset reads, with the spine's
// join-key columns.
type entityJob struct {
	entity  *features.Entity
	keyCols []int // spine column of each join key
	views   []*viewJob
	sources []*entitySource // the sources its views read
}

// plan resolves the requested features.
type plan struct {
	outputs  []output
	entities []*entityJob
	sources  map[string][]*viewJob // source name → views reading it
	service  *features.Service
	keys     map[string]features.Type
	// computedBy says what computes each output: a feature's reference,
	// its view's fingerprint and TTL (past which its windows are empty), an
	// on-demand feature's expression.
	computedBy []string
}

func newPlan(defs *features.Definitions, refs []string, service string) (*plan, error) {
	p := &plan{sources: map[string][]*viewJob{}, keys: map[string]features.Type{}}
	if service != "" {
		p.service = defs.Service(service)
		if p.service == nil {
			return nil, fmt.Errorf("unknown feature service %q", service)
		}
		refs = nil
		for _, r := range p.service.Features {
			refs = append(refs, r.String())
		}
	}
	views := map[*features.View]*viewJob{}
	var order []*viewJob // views in the order first requested
	var unknown, problems []string
	byName := map[string]string{}   // output column → reference
	resolved := map[string]string{} // view@version:feature → reference
	for _, r := range refs {
		ref, err := features.ParseFeatureRef(r)
		if err != nil {
			unknown = append(unknown, err.Error())
			continue
		}
		v, f, err := defs.Resolve(ref)
		if err != nil {
			unknown = append(unknown, strings.TrimPrefix(err.Error(), features.ErrUnknownFeature.Error()+": "))
			continue
		}
		name := features.FeatureRef{View: v.Name, Feature: f.Name}.Column()
		full := v.Ref() + ":" + f.Name
		switch prev, dup := resolved[full]; {
		case dup && prev == r:
			problems = append(problems, r+" is listed twice")
			continue
		case dup:
			problems = append(problems, fmt.Sprintf("%s is %s, already listed as %s", r, full, prev))
			continue
		}
		resolved[full] = r
		if prev, dup := byName[name]; dup {
			problems = append(problems, fmt.Sprintf("%s and %s would both be column %s: request one version of a view", prev, r, name))
			continue
		}
		byName[name] = r
		vj := views[v]
		if vj == nil {
			vj = &viewJob{view: v, source: defs.Source(v.Source)}
			views[v] = vj
			order = append(order, vj)
		}
		vj.names = append(vj.names, f.Name)
		vj.outputs = append(vj.outputs, len(p.outputs))
		p.outputs = append(p.outputs, output{name: name, typ: f.ValueType(vj.source)})
		p.computedBy = append(p.computedBy, fmt.Sprintf("%s %s ttl=%s", full, v.Fingerprint(defs), v.TTL))
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: %s", features.ErrUnknownFeature, strings.Join(append(unknown, problems...), "; "))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	for _, vj := range order {
		eng, err := features.NewEngine(defs, vj.view, vj.names...)
		if err != nil {
			return nil, err
		}
		vj.engine = eng
		src := vj.source
		ent := defs.Entity(vj.view.Entity)
		for _, k := range ent.JoinKeys {
			vj.keyIdx = append(vj.keyIdx, src.Field(k))
			t := src.Schema[src.Field(k)].Type
			if prev, ok := p.keys[k]; ok && prev != t {
				// Sources disagree: a CSV spine's key is read as written,
				// which names the entity of an int source too.
				t = features.TypeString
			}
			p.keys[k] = t
		}
		var ej *entityJob
		for _, e := range p.entities {
			if e.entity == ent {
				ej = e
			}
		}
		if ej == nil {
			ej = &entityJob{entity: ent}
			p.entities = append(p.entities, ej)
		}
		vj.entity = ej
		es, _ := ej.source(src.Name)
		if es == nil {
			es = &entitySource{source: src, keyIdx: vj.keyIdx}
			ej.sources = append(ej.sources, es)
		}
		es.views = append(es.views, len(ej.views))
		es.fields = slices.Compact(slices.Sorted(slices.Values(append(es.fields, eng.Fields()...))))
		ej.views = append(ej.views, vj)
		p.sources[src.Name] = append(p.sources[src.Name], vj)
	}
	if p.service != nil {
		for _, o := range p.service.OnDemand {
			// Null if dynamic: the values decide (onDemand).
			p.outputs = append(p.outputs, output{name: o.Name, typ: o.Type(), dynamic: o.Type() == features.TypeNull})
			p.computedBy = append(p.computedBy, o.Name+" = "+o.Expr)
		}
	}
	return p, nil
}

// Dataset builds a point-in-time-correct training set: for each spine row,
// the requested features of its entities as of its time, computed by the
// engine from the offline event log, written as Parquet in the spine's
// order after the spine's own columns, with a reference profile beside it.
func Dataset(ctx context.Context, cfg DatasetConfig) (Summary, error) {
	began := time.Now()
	if err := cfg.validate(); err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit = 1 << 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = noProgress{}
	}
	p, err := newPlan(cfg.Definitions, cfg.Features, cfg.Service)
	if err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	// A version's features are what serve computed under it: a definition
	// changed without a new version would give other values.
	var views []*features.View
	for _, ej := range p.entities {
		for _, vj := range ej.views {
			views = append(views, vj.view)
		}
	}
	if err := features.NewRegistry(cfg.Offline).Check(ctx, cfg.Definitions, views...); err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	if cfg.LogMarks != "" && cfg.marks == nil {
		var taken time.Time
		if cfg.marks, taken, err = runMarks(ctx, cfg, p, cfg.LogMarks, true); err != nil {
			return Summary{}, fmt.Errorf("backfill dataset: --log-marks: %w", err)
		}
		cfg.Logger.Info("reading the event log up to the run's marks", "log_marks", cfg.LogMarks,
			"taken", taken.Round(time.Second), "ago", time.Since(taken).Round(time.Second))
	}
	if cfg.partRows == 0 {
		if n, partRows := cfg.parts(len(p.outputs)); n > 1 {
			return inParts(ctx, cfg, p, n, partRows, began)
		}
		// A killed run's parts are of no use to a run without parts.
		if err := removeParts(cfg.Out, ""); err != nil {
			return Summary{}, fmt.Errorf("backfill dataset: %w", err)
		}
	}
	var sh *spineShard
	if cfg.Shard.Count > 0 {
		sh = &spineShard{Shard: cfg.Shard, keys: p.entities[0].entity.JoinKeys}
	}
	sp, err := readSpine(cfg.Spine, cfg.TimestampColumn, p.keys, sh)
	if err != nil {
		return Summary{}, err
	}
	if n := len(sp.cols) + len(p.outputs); n > maxColumns {
		return Summary{}, &SpineError{File: cfg.Spine, Err: fmt.Errorf("%d columns and %d features: a dataset holds at most %d columns", len(sp.cols), len(p.outputs), maxColumns)}
	}
	if sp.sharded {
		if sp.run, sp.runParts, err = runID(cfg, p); err != nil {
			return Summary{}, fmt.Errorf("backfill dataset: %w", err)
		}
		sp.shard = cfg.Shard
	}
	for _, o := range p.outputs {
		if index(sp.cols, o.name) >= 0 {
			return Summary{}, &SpineError{File: cfg.Spine, Err: fmt.Errorf("column %q is also the name of a requested feature", o.name)}
		}
	}
	if p.service != nil {
		for _, o := range p.service.OnDemand {
			for _, k := range o.RequestKeys() {
				if index(sp.cols, k) < 0 {
					return Summary{}, &SpineError{File: cfg.Spine, Err: fmt.Errorf("no column %q: on-demand feature %s reads request.%s", k, o.Name, k)}
				}
			}
		}
	}
	for _, ej := range p.entities {
		for _, k := range ej.entity.JoinKeys {
			ej.keyCols = append(ej.keyCols, index(sp.cols, k))
		}
	}
	// Checked now rather than after hours of computing.
	if !strings.EqualFold(filepath.Ext(cfg.Out), ".csv") {
		if err := offline.ValidateColumns(sp.cols); err != nil {
			return Summary{}, &SpineError{File: cfg.Spine, Err: fmt.Errorf("its columns cannot be written to Parquet: %w", err)}
		}
	}
	cfg.Logger.Info("spine read", "file", cfg.Spine, "rows", sp.len())
	if sp.len() > 0 && slices.Max(sp.times) < secondsLike {
		cfg.Logger.Warn("every spine time is before 1973-03-03: are they epoch seconds? Integer times are epoch milliseconds",
			"file", cfg.Spine, "column", cfg.TimestampColumn, "latest", time.UnixMilli(slices.Max(sp.times)).UTC())
	}

	// Size the buckets from the event log's size on disk: an event in
	// memory takes about ten times its compressed bytes, and one bucket per
	// core is in memory at once.
	files, err := logFiles(ctx, &cfg, p)
	if err != nil {
		return Summary{}, err
	}
	var logBytes int64
	for _, fs := range files {
		for _, f := range fs {
			logBytes += f.Size
		}
	}
	// Half of the limit is the spine's rows and their features' values,
	// which stay in memory: parts keep them within it, unless one entity
	// has most of a part's rows or the parts would be more than maxParts.
	share := max(1, cfg.MemoryLimit/2)
	if held := spineHeld(int64(sp.len()), len(sp.cols)+len(p.outputs), sp.table.text()); held > share+share/4 {
		cfg.Logger.Warn("this run's spine rows and their features take more than half of --memory-limit: raise it",
			"rows", sp.len(), "columns", len(sp.cols)+len(p.outputs), "about", humanize.IBytes(uint64(held)), "memory_limit", humanize.IBytes(uint64(cfg.MemoryLimit)))
	}
	// The other half is events.
	inMemory := 10 * logBytes * int64(runtime.GOMAXPROCS(0))
	buckets := int(max(1, min(1024, inMemory/share+1)))
	if inMemory < share {
		buckets = 1
	}

	types := make([]features.Type, len(p.outputs))
	for o, out := range p.outputs {
		types[o] = out.typ
	}
	values := newTable(sp.len(), types)
	b := &builder{cfg: &cfg, plan: p, spine: sp, values: values, buckets: buckets, seed: maphash.MakeSeed()}
	events, err := b.run(ctx, files)
	if err != nil {
		return Summary{}, err
	}
	if n := b.refused.Load(); n > 0 {
		cfg.Logger.Info("events a view could not apply, as in ingest (a filter failed on a null, say)", "count", n)
	}
	if err := ctx.Err(); err != nil {
		return Summary{}, err
	}
	if p.service != nil {
		if err := onDemand(p, sp, values); err != nil {
			return Summary{}, err
		}
	}
	// The profile is computed while the dataset is written, and both are
	// put in place once the dataset is. A part has none.
	var g errgroup.Group
	var tmp string
	g.Go(func() (err error) {
		tmp, err = writeDataset(ctx, cfg.Out, sp, p, values, cmp.Or(cfg.partRows, rowGroupRows), cfg.Progress)
		return err
	})
	var prof *drift.Profile
	if cfg.partRows == 0 {
		cols := make([]offline.Column, len(p.outputs))
		idx := make([]int, len(p.outputs))
		for o, out := range p.outputs {
			cols[o], idx[o] = offline.Column{Name: out.name, Type: out.typ}, o
		}
		g.Go(func() error { prof = new(profile(cols, values.rows(), values.get, idx)); return nil })
	}
	if err := g.Wait(); err != nil {
		return Summary{}, err
	}
	if err := publish(tmp, cfg.Out, prof); err != nil {
		return Summary{}, err
	}
	return Summary{Rows: sp.len(), Events: events, Buckets: buckets, Elapsed: time.Since(began)}, nil
}

// logFiles lists the event log's files of each source the dataset reads.
// A store with none at all is refused as the wrong store (a mistyped
// --offline or --data-dir), not taken for one whose features are all null;
// a source of a few with no events yet is only warned of.
func logFiles(ctx context.Context, cfg *DatasetConfig, p *plan) (map[string][]offline.LogFile, error) {
	files := map[string][]offline.LogFile{}
	var empty []string
	for src := range p.sources {
		fs, err := cfg.Offline.LogFiles(ctx, "events/"+src)
		if err != nil {
			return nil, err
		}
		if len(fs) == 0 {
			empty = append(empty, src)
		}
		files[src] = fs
	}
	if len(empty) == len(files) {
		return nil, fmt.Errorf("backfill dataset: %w", noEventLog(cfg.Offline, empty))
	}
	for _, src := range empty {
		cfg.Logger.Warn("the event log is empty: its views' features are computed from no events", "log", "events/"+src)
	}
	return files, nil
}

// noEventLog refuses a store with no event log of the sources a dataset
// reads, as the wrong store rather than one of no events.
func noEventLog(off *offline.Dir, sources []string) error {
	slices.Sort(sources)
	return fmt.Errorf("no event log of source %s in offline store %s: is --offline (or --data-dir) the store ingest writes?",
		strings.Join(sources, ", "), off)
}

// cellBytes is about what a spine row takes in memory per column, its own
// and its features', besides the bytes of its strings: a cell of 16 bytes,
// a string's header, the collector's headroom. With its text, a row of
// the fraud benchmark's spine (five columns, 35 bytes of CSV) and its ten
// features come to 395 bytes, where 473 were measured.
const cellBytes = 24

// spineHeld is about what a spine's rows and their features' values take
// in memory: cells of cellBytes, and text bytes of strings.
func spineHeld(rows int64, cols int, text int64) int64 {
	return cellBytes*rows*int64(cols) + text
}

// parts returns how many parts the dataset, or its shard, is built in:
// enough that each part's spine rows and their outputs take at most half
// of the memory limit, up to maxParts. A spine it cannot size is built at
// once, for readSpine to say what is wrong with it. It also returns the
// rows of a part's row groups: merging holds one of each part, as rows of
// values (twice a table's cells), together no more than a part.
func (c *DatasetConfig) parts(outputs int) (n, groupRows int) {
	rows, cols, text, err := spineSize(c.Spine)
	if err != nil {
		return 1, 0
	}
	rows /= int64(max(1, c.Shard.Count))
	text /= int64(max(1, c.Shard.Count))
	share := max(1, c.MemoryLimit/2)
	held := spineHeld(rows, cols+1+outputs, text) // a part's rows are numbered
	n = int(max(1, min(maxParts, (held+share-1)/share)))
	return n, int(min(rowGroupRows, max(1024, rows/int64(2*n*n))))
}

// maxColumns bounds a dataset's columns, the spine's and the features':
// the Parquet writer numbers them in 16 bits.
const maxColumns = 65_000

// maxParts bounds the parts of a dataset, each of which reads the whole
// event log and is open at once when they are merged.
const maxParts = 256

// inParts builds a dataset, or its shard, in n parts, one after another,
// and merges them into cfg.Out. A part is a shard (Shard): as a row is in
// the shard its entity's hash is, modulo the shards' count, part j of
// shard i/c is shard i+c·j of c·n, and the parts of a shard are its rows.
// Each part holds its share of the rows and reads the whole event log. The
// parts are written beside cfg.Out, hidden and named after the run
// (runID), and removed once merged: a run killed part way goes on, when
// run again, from the parts it wrote. Every part reads the log as it was
// when the run began (runMarks), or to LogMarks: events written since, by
// an ingest beside it, would have a later part count what an earlier one
// did not.
func inParts(ctx context.Context, cfg DatasetConfig, p *plan, n, partRows int, began time.Time) (Summary, error) {
	run, _, err := runID(cfg, p)
	if err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	whole := cfg.Shard
	if whole.Count == 0 {
		whole = Shard{Index: 0, Count: 1}
	}
	// Another run's parts (another spine, definitions, flags or limit)
	// are of no use.
	this := fmt.Sprintf("%s-of-%d-", run, whole.Count*n)
	if err := removeParts(cfg.Out, this); err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	dir := filepath.Dir(cfg.Out)
	cfg.Logger.Info("the spine's rows and their features take more than half of --memory-limit: the dataset is built in parts, each reading the event log",
		"parts", n, "memory_limit", humanize.IBytes(uint64(cfg.MemoryLimit)))
	var marksPath string // the run's own marks, removed with its parts
	if cfg.marks == nil {
		marksPath = filepath.Join(dir, partPrefix(cfg.Out)+this+"marks.json")
		if cfg.marks, _, err = runMarks(ctx, cfg, p, marksPath, false); err != nil {
			return Summary{}, fmt.Errorf("backfill dataset: %w", err)
		}
	}
	sum := Summary{Parts: n}
	paths := make([]string, n)
	for j := range n {
		part := cfg
		part.Shard = Shard{Index: whole.Index + whole.Count*j, Count: whole.Count * n}
		part.Out = filepath.Join(dir, partPrefix(cfg.Out)+this+strconv.Itoa(part.Shard.Index)+".parquet")
		part.partRows = partRows
		paths[j] = part.Out
		if _, err := os.Stat(part.Out); err == nil {
			cfg.Logger.Info("part built by an earlier run, kept", "part", j+1, "of", n)
			continue
		}
		cfg.Logger.Info("building part", "part", j+1, "of", n)
		s, err := Dataset(ctx, part)
		if err != nil {
			return Summary{}, err
		}
		sum.Events += s.Events
		sum.Buckets = max(sum.Buckets, s.Buckets)
	}
	cfg.Logger.Info("merging the parts", "parts", n)
	var shard *Shard // the parts are of it, rather than the whole spine
	if cfg.Shard.Count > 0 {
		shard = &cfg.Shard
	}
	if sum.Rows, err = merge(cfg.Out, paths, shard); err != nil {
		return Summary{}, fmt.Errorf("backfill dataset: %w", err)
	}
	for _, path := range append(paths, marksPath) {
		if path != "" {
			os.Remove(path)
		}
	}
	sum.Elapsed = time.Since(began)
	return sum, nil
}

// runMarks returns the marks of the event log (DatasetConfig.marks) that a
// run reads to, and when they were taken: those already in path, written
// by another job of the run or by an earlier, killed one, or else the
// log's now, written there first. They are of every source of the
// definitions, so that jobs reading other sources may share them. With
// shared, jobs that start at once agree: the file is linked into place only
// if none is there, and the one there wins.
func runMarks(ctx context.Context, cfg DatasetConfig, p *plan, path string, shared bool) (map[string]map[int32]int64, time.Time, error) {
	if marks, taken, err := readMarks(path, p); !errors.Is(err, fs.ErrNotExist) {
		return marks, taken, err
	}
	marks := map[string]map[int32]int64{}
	for _, src := range cfg.Definitions.Sources {
		m, err := replay.LogMarks(ctx, cfg.Offline, src)
		if err != nil {
			return nil, time.Time{}, err
		}
		marks[src.Name] = m
	}
	// Marks of no event at all would have every later job of the run read
	// none: the run is refused (logFiles) before they are recorded.
	var empty []string
	for source := range p.sources {
		if len(marks[source]) > 0 {
			empty = nil
			break
		}
		empty = append(empty, source)
	}
	if len(empty) > 0 {
		return nil, time.Time{}, noEventLog(cfg.Offline, empty)
	}
	b, err := json.Marshal(marks)
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, time.Time{}, err
	}
	name := filepath.Base(path)
	if !strings.HasPrefix(name, ".") {
		name = "." + name
	}
	f, err := os.CreateTemp(filepath.Dir(path), name+".tmp-*")
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record the event log's marks in %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err = errors.Join(err, f.Chmod(0o644), f.Sync(), f.Close()); err != nil {
		return nil, time.Time{}, fmt.Errorf("record the event log's marks in %s: %w", path, err)
	}
	if !shared {
		err = os.Rename(f.Name(), path)
	} else if err = os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return readMarks(path, p)
	} else if err != nil {
		err = fmt.Errorf("%w: jobs starting at once agree on the marks by a hard link, which this file system may not make", err)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record the event log's marks in %s: %w", path, err)
	}
	return marks, time.Now(), nil
}

// readMarks reads the marks runMarks wrote to path, which must hold those
// of every source p reads, and the time they were written.
func readMarks(path string, p *plan) (map[string]map[int32]int64, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if fi.Size() == 0 {
		return nil, time.Time{}, fmt.Errorf("%s is empty: give a file that is not there yet, which the first job of the run writes", path)
	}
	var marks map[string]map[int32]int64
	if err := json.NewDecoder(f).Decode(&marks); err != nil {
		return nil, time.Time{}, fmt.Errorf("the event log's marks in %s: %w", path, err)
	}
	for source := range p.sources {
		if marks[source] == nil {
			return nil, time.Time{}, fmt.Errorf("%s has no marks of source %s: runs of other definitions wrote it; give each run a file of its own", path, source)
		}
	}
	return marks, fi.ModTime(), nil
}

// partPrefix begins the names of the parts of the dataset out (inParts):
// hidden, beside it.
func partPrefix(out string) string { return "." + filepath.Base(out) + ".part-" }

// removeParts removes the parts of the dataset out whose names, after
// partPrefix, do not begin with keep (all of them for "").
func removeParts(out, keep string) error {
	dir := filepath.Dir(out)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), partPrefix(out)); ok && (keep == "" || !strings.HasPrefix(rest, keep)) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

type noProgress struct{}

func (noProgress) Step(string, int64) {}
func (noProgress) Add(int64)          {}

// builder computes the feature values of a dataset.
type builder struct {
	cfg     *DatasetConfig
	plan    *plan
	spine   *spine
	values  *table // a column per output
	buckets int
	seed    maphash.Seed
	refused atomic.Int64 // events a view could not apply
}

// ref is one spine row of an entity: its time, its row, and whether the
// events at its time precede it: with --inclusive, or for a time past its
// millisecond (te < t then means te <= its millisecond).
type ref struct {
	t    int64
	row  int
	incl bool
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

func (b *builder) bucketOf(key string) int {
	if b.buckets == 1 {
		return 0
	}
	return int(maphash.String(b.seed, key) % uint64(b.buckets))
}

func (b *builder) run(ctx context.Context, logs map[string][]offline.LogFile) (int64, error) {
	// Each entity's spine rows, by key, and its keys by bucket: an entity
	// per core at once.
	keys := make([]map[string]*entityWork, len(b.plan.entities))
	buckets := make([][][]*entityWork, len(b.plan.entities)) // entity → bucket → ord
	var wg sync.WaitGroup
	for e, ej := range b.plan.entities {
		keys[e], buckets[e] = map[string]*entityWork{}, make([][]*entityWork, b.buckets)
		wg.Go(func() { b.findEntities(ej, keys[e], buckets[e]) })
	}
	wg.Wait()

	// One pass over the event log, a file per core at once: each event an
	// entity's spine rows need goes to its bucket's file of that core.
	// Those files stay open until their bucket is computed: as many cores
	// read as half the open-file limit allows, the rest left for the log's
	// files, the output and the network.
	perWorker := len(b.plan.entities) * b.buckets
	limit := openFileLimit() / 2
	if perWorker > limit {
		return 0, fmt.Errorf("spill events: %d buckets of %d entities take %d files open at once, more than half the open-file limit (%d): raise it (ulimit -n) or --memory-limit",
			b.buckets, len(b.plan.entities), perWorker, 2*limit)
	}
	workers := min(runtime.GOMAXPROCS(0), limit/perWorker)
	spills := make([][][]*spillFile, len(b.plan.entities)) // entity → bucket → worker
	strs := make([]*spillStrings, workers)                 // what a worker's files share
	for w := range strs {
		strs[w] = newSpillStrings()
	}
	// The files' write buffers take an eighth of the memory limit, within
	// 16 to 256 KiB each.
	files := len(spills) * b.buckets * workers
	buffer := int(min(256<<10, max(16<<10, b.cfg.MemoryLimit/8/int64(files))))
	for e := range spills {
		spills[e] = make([][]*spillFile, b.buckets)
		for i := range spills[e] {
			for w := range workers {
				sf, err := newSpillFile(b.cfg.TempDir, len(buckets[e][i]), buffer, strs[w])
				if err != nil {
					return 0, err
				}
				defer sf.remove()
				spills[e][i] = append(spills[e][i], sf)
			}
		}
	}
	var total int64
	for src := range logs {
		n, err := b.readLog(ctx, src, workers, keys, spills)
		if err != nil {
			return 0, err
		}
		total += n
	}

	// Each bucket: apply its events per entity in time order, evaluating at
	// each spine time. Buckets go in parallel, one per core: they write
	// different rows, or different columns of a row.
	b.cfg.Progress.Step("computing features", int64(b.spine.len()*len(b.plan.entities)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for e, ej := range b.plan.entities {
		for i := range b.buckets {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				defer func() {
					for _, sf := range spills[e][i] {
						sf.remove()
					}
				}()
				strs, err := loadSpills(ej, buckets[e][i], spills[e][i])
				if err != nil {
					return err
				}
				return b.compute(gctx, ej, buckets[e][i], strs)
			})
		}
	}
	return total, g.Wait()
}

// findEntities finds the entities of ej in the spine: each one's spine
// rows, its work by key and by bucket.
func (b *builder) findEntities(ej *entityJob, keys map[string]*entityWork, buckets [][]*entityWork) {
	var key []byte
	vals := make([]features.Value, 0, len(ej.keyCols))
	for row := range b.spine.len() {
		vals = vals[:0]
		for _, c := range ej.keyCols {
			vals = append(vals, b.spine.table.get(row, c))
		}
		key, _ = online.AppendEntityKey(key[:0], vals...)
		w := keys[string(key)]
		if w == nil {
			bi := b.bucketOf(string(key))
			w = &entityWork{bucket: bi, ord: len(buckets[bi]), until: math.MinInt64}
			buckets[bi] = append(buckets[bi], w)
			keys[string(key)] = w
		}
		w.rows = append(w.rows, ref{t: b.spine.times[row], row: row, incl: b.cfg.Inclusive || b.spine.past[row]})
		w.until = max(w.until, b.spine.times[row])
	}
}

// readLog reads a source's event log and routes each event, a file per
// worker at once.
func (b *builder) readLog(ctx context.Context, source string, workers int, keys []map[string]*entityWork, spills [][][]*spillFile) (int64, error) {
	src := b.cfg.Definitions.Source(source)
	b.cfg.Progress.Step("reading events/"+source, -1) // events: unknown until read
	// What the entities read: join keys and their views' fields.
	var fields []int
	for _, ej := range b.plan.entities {
		if es, _ := ej.source(source); es != nil {
			fields = append(append(fields, es.keyIdx...), es.fields...)
		}
	}
	fields = slices.Compact(slices.Sorted(slices.Values(fields)))
	routers := make([]router, workers)
	for i := range routers {
		routers[i].marks = b.cfg.marks[source]
	}
	var events atomic.Int64
	err := eventlog.EachParallel(ctx, b.cfg.Offline, src, fields, workers, func(wi int, lb *eventlog.Batch) error {
		r := &routers[wi]
		for e, ej := range b.plan.entities {
			if es, si := ej.source(source); es != nil {
				if err := r.route(lb, es, si, keys[e], spills[e], wi); err != nil {
					return err
				}
			}
		}
		events.Add(int64(lb.Len))
		b.cfg.Progress.Add(int64(lb.Len))
		return nil
	})
	return events.Load(), err
}

// router routes a worker's log files' events to spill files.
type router struct {
	to    []*entityWork // per event of a file: its entity's work, or nil
	byKey []*entityWork // per string of a key column
	nums  [][]uint32    // per field routed, per string of its column: its spill number, or noNumber
	ev    spillEvent
	key   []byte
	vals  []features.Value
	// marks, of a part, are the last offset of each partition routed
	// (DatasetConfig.marks); nil routes every event.
	marks map[int32]int64
}

// noNumber marks a string not yet numbered in router.nums.
const noNumber = math.MaxUint32

// route writes each event of lb that an entity of the source es (number si
// of its entity) needs to its bucket's spill file, spills[bucket][wi]: an
// event of an entity with a spine row at or after its time.
func (r *router) route(lb *eventlog.Batch, es *entitySource, si int, keys map[string]*entityWork, spills [][]*spillFile, wi int) error {
	to := r.entities(lb, es, keys)
	ev := &r.ev
	ev.fields, ev.nums = slices.Grow(ev.fields[:0], len(es.fields))[:len(es.fields)], slices.Grow(ev.nums[:0], len(es.fields))[:len(es.fields)]
	cols := make([]*offline.ColumnValues, len(es.fields))
	for len(r.nums) < len(es.fields) {
		r.nums = append(r.nums, nil)
	}
	for j, f := range es.fields {
		cols[j] = lb.Field(f)
		if c := cols[j]; c != nil && c.Index != nil {
			r.nums[j] = slices.Grow(r.nums[j][:0], len(c.Strings))[:len(c.Strings)]
			for k := range r.nums[j] {
				r.nums[j][k] = noNumber
			}
		}
	}
	for i, w := range to {
		if w == nil || lb.Time(i) > w.until {
			continue // no spine row of this entity, or none after it
		}
		if r.marks != nil {
			if m, ok := r.marks[lb.Partition(i)]; !ok || lb.Offset(i) > m {
				continue // written after the run began
			}
		}
		ev.time, ev.partition, ev.offset = lb.Time(i), lb.Partition(i), lb.Offset(i)
		for j, c := range cols {
			ev.fields[j], ev.nums[j] = features.Null, 0
			switch {
			case c == nil: // not in the file: null
			case c.Index == nil:
				ev.fields[j] = c.At(i)
			case c.Index[i] >= 0:
				k := c.Index[i]
				ev.fields[j] = c.Strings[k]
				if r.nums[j][k] == noNumber {
					r.nums[j][k] = spills[w.bucket][wi].strings.number(c.Strings[k].Str())
				}
				ev.nums[j] = r.nums[j][k]
			}
		}
		if err := spills[w.bucket][wi].write(w.ord, si, ev); err != nil {
			return err
		}
	}
	return nil
}

// entities returns the work of each event's entity, or nil where its join
// keys are null or it has no spine row. A key of one string column is
// looked up once per string of the column, not once per event.
func (r *router) entities(lb *eventlog.Batch, es *entitySource, keys map[string]*entityWork) []*entityWork {
	to := r.to[:0]
	defer func() { r.to = to }()
	if len(es.keyIdx) == 1 {
		if c := lb.Field(es.keyIdx[0]); c != nil && c.Index != nil {
			r.byKey = r.byKey[:0]
			for _, s := range c.Strings {
				r.key, _ = online.AppendEntityKey(r.key[:0], s)
				r.byKey = append(r.byKey, keys[string(r.key)])
			}
			for _, k := range c.Index {
				if k < 0 {
					to = append(to, nil)
				} else {
					to = append(to, r.byKey[k])
				}
			}
			return to
		}
	}
	for i := range lb.Len {
		r.vals = r.vals[:0]
		for _, f := range es.keyIdx {
			v := features.Null
			if c := lb.Field(f); c != nil {
				v = c.At(i)
			}
			r.vals = append(r.vals, v)
		}
		var ok bool
		if r.key, ok = online.AppendEntityKey(r.key[:0], r.vals...); !ok {
			to = append(to, nil)
			continue
		}
		to = append(to, keys[string(r.key)])
	}
	return to
}

// entitySource is a source that views of an entity read.
type entitySource struct {
	source *features.Source
	keyIdx []int // schema index of each join key
	fields []int // schema indexes the views read (Engine.Fields)
	views  []int // the views, by index in entityJob.views
}

// source returns the entity's source named name and its index, or nil.
func (ej *entityJob) source(name string) (*entitySource, int) {
	for i, es := range ej.sources {
		if es.source.Name == name {
			return es, i
		}
	}
	return nil, -1
}

// entityWork is one entity's share of a dataset: its spine rows, and the
// events of its views' sources, each cut down to the fields those views
// read and packed one after another, so that applying them in turn reads
// memory in order.
type entityWork struct {
	bucket int   // its bucket, by the hash of its key
	ord    int   // its number in its bucket
	until  int64 // its latest spine time: later events change nothing
	rows   []ref
	events []packedEvent
	// fields are each event's, per its source's fields: a cell of the
	// field's type, or null; a string's bits are its index in its bucket's
	// strings (loadSpills).
	fields []cell
}

// packedEvent is an event in entityWork: where it sorts, its source (an
// index in entityJob.sources), and where its fields start.
type packedEvent struct {
	time      int64
	offset    int64
	partition int32
	source    int32
	at        int
}

// before reports whether a is applied before b: by time, then by where
// it is in the log.
func (a *packedEvent) before(b *packedEvent) bool {
	if a.time != b.time {
		return a.time < b.time
	}
	if a.partition != b.partition {
		return a.partition < b.partition
	}
	return a.offset < b.offset
}

// sortEvents puts es in apply order, with buf as scratch space, and returns
// buf for reuse. The events come in sorted runs (an entity's events of one
// log file are in order, and the files go by time), so it merges
// neighbouring runs until one is left: a few passes over the events rather
// than a comparison sort's many; neighbours already in order stay as they
// are.
func sortEvents(es, buf []packedEvent) []packedEvent {
	starts := []int{0} // where each run starts, then len(es)
	for i := 1; i < len(es); i++ {
		if es[i].before(&es[i-1]) {
			starts = append(starts, i)
		}
	}
	starts = append(starts, len(es))
	for len(starts) > 2 {
		runs, n := len(starts)-1, 0
		for k := 0; k < runs; k += 2 {
			if k+1 < runs {
				lo, mid, hi := starts[k], starts[k+1], starts[k+2]
				if es[mid].before(&es[mid-1]) {
					buf = mergeRuns(es[lo:hi], mid-lo, buf)
				}
			}
			starts[n] = starts[k] // n <= k: not read again
			n++
		}
		starts[n] = len(es)
		starts = starts[:n+1]
	}
	return buf
}

// mergeRuns merges the sorted runs s[:m] and s[m:] in place, the first
// copied to buf.
func mergeRuns(s []packedEvent, m int, buf []packedEvent) []packedEvent {
	buf = append(buf[:0], s[:m]...)
	i, j, k := 0, m, 0
	for i < len(buf) && j < len(s) {
		if s[j].before(&buf[i]) {
			s[k] = s[j]
			j++
		} else {
			s[k] = buf[i]
			i++
		}
		k++
	}
	copy(s[k:], buf[i:])
	return buf
}

// compute applies each entity's events in order, evaluating its views at
// each of its spine rows' times. The entities are shared out between one
// worker per core, so that the cores stay busy until the last entity of
// the largest bucket is done.
func (b *builder) compute(ctx context.Context, ej *entityJob, ws []*entityWork, strs []string) error {
	var next atomic.Int64
	var g errgroup.Group
	for range min(runtime.GOMAXPROCS(0), len(ws)) {
		g.Go(func() error {
			c := newComputer(ej)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ws) {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := b.computeEntity(c, ws[i], strs); err != nil {
					return err
				}
				*ws[i] = entityWork{} // done: its events can go
			}
		})
	}
	return g.Wait()
}

// computer is what computing one entity needs, reused for the next.
type computer struct {
	ej     *entityJob
	events []features.Event  // per source: the event being applied
	states []*features.State // per view
	out    [][]features.Value
	buf    []packedEvent // sortEvents' scratch
}

func newComputer(ej *entityJob) *computer {
	c := &computer{ej: ej, events: make([]features.Event, len(ej.sources)),
		states: make([]*features.State, len(ej.views)), out: make([][]features.Value, len(ej.views))}
	for i, es := range ej.sources {
		c.events[i].Fields = make([]features.Value, len(es.source.Schema)) // fields no view reads stay null
	}
	for i, vj := range ej.views {
		c.out[i] = make([]features.Value, len(vj.names))
	}
	return c
}

// computeEntity computes the spine rows of one entity, the strings of its
// events' fields in strs.
func (b *builder) computeEntity(c *computer, w *entityWork, strs []string) error {
	ej, states, out := c.ej, c.states, c.out
	rs, es := w.rows, w.events
	slices.SortFunc(rs, func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.t, b.t), compareBool(a.incl, b.incl), cmp.Compare(a.row, b.row))
	})
	c.buf = sortEvents(es, c.buf)
	for i, vj := range ej.views {
		states[i] = vj.engine.NewState()
	}
	next := 0
	for ri, r := range rs {
		for ; next < len(es) && (es[next].time < r.t || r.incl && es[next].time == r.t); next++ {
			pe := &es[next]
			src := ej.sources[pe.source]
			ev := &c.events[pe.source]
			ev.Time, ev.Partition, ev.Offset = pe.time, pe.partition, pe.offset
			for j, f := range src.fields {
				if x := w.fields[pe.at+j]; x.typ == features.TypeString {
					ev.Fields[f] = features.String(strs[x.bits])
				} else {
					ev.Fields[f] = features.FromBits(x.typ, x.bits)
				}
			}
			for _, i := range src.views {
				// An event a view cannot apply (its filter fails on a
				// null, say) changes nothing, as in ingest.
				if _, err := ej.views[i].engine.Apply(states[i], ev); err != nil {
					b.refused.Add(1)
				}
			}
		}
		// Rows at one time share one evaluation: the same events
		// precede them.
		if ri == 0 || rs[ri-1].t != r.t || rs[ri-1].incl != r.incl {
			for i, vj := range ej.views {
				// Before an entity's first event, and past the view's
				// TTL (when ingest deletes its state), its windows are
				// empty: 0 for counts and sums, as serve gives a model.
				if last, ok := states[i].LastEventTime(); !ok || vj.view.TTL > 0 && r.t-last > vj.view.TTL.Milliseconds() {
					vj.engine.Empty(out[i])
					continue
				}
				if err := vj.engine.Evaluate(states[i], r.t, out[i]); err != nil {
					return err
				}
			}
		}
		for i, vj := range ej.views {
			for f, o := range vj.outputs {
				b.values.set(r.row, o, out[i][f])
			}
		}
	}
	b.cfg.Progress.Add(int64(len(rs)))
	return nil
}

// secondsLike is the epoch milliseconds below which every time of a spine
// is more likely epoch seconds (until the year 5138) than a time of 1970
// to 1973.
const secondsLike = 1e11

// runID identifies the run a shard is of (MetaRun) by the hashes of its
// parts (MetaRunParts), which say how two runs differ: the spine's bytes,
// what computes each feature, the flags that change values, how this
// build computes, and the log's marks read to (LogMarks).
func runID(cfg DatasetConfig, p *plan) (id, parts string, err error) {
	f, err := os.Open(cfg.Spine)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	spine := xxhash.New()
	if _, err := io.Copy(spine, f); err != nil {
		return "", "", fmt.Errorf("read %s: %w", cfg.Spine, err)
	}
	hash := func(s string) string { return strconv.FormatUint(xxhash.Sum64String(s), 16) }
	ps := []string{
		"spine=" + strconv.FormatUint(spine.Sum64(), 16),
		"definitions=" + hash(strings.Join(p.computedBy, "\x00")),
		"flags=" + hash(fmt.Sprintf("inclusive=%t\x00timestamp-column=%s", cfg.Inclusive, cfg.TimestampColumn)),
		// no-events: what an entity without events has; shards of older
		// builds, which gave nulls, are of another run. parts: a part
		// reads the log to its run's marks.
		"build=" + hash("no-events=empty-window\x00parts=to-marks"),
	}
	if cfg.LogMarks != "" {
		// Shards read to other marks read other logs. (A run's own marks,
		// of its parts, are not of its identity: they are taken after it.)
		b, err := json.Marshal(cfg.marks) // maps marshal in key order
		if err != nil {
			return "", "", err
		}
		ps = append(ps, "log-marks="+hash(string(b)))
	}
	parts = strings.Join(ps, " ")
	return hash(parts), parts, nil
}
