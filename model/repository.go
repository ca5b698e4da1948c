package model

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cuda"
	"github.com/quiver-ml/quiver/internal/regularfile"
	"github.com/quiver-ml/quiver/model/batch"
	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/xgboost"
)

// Evaluator computes a model on row-major float32 batches: rows rows of
// NumFeatures values (NaN for a missing one) into rows rows of NumOutputs.
type Evaluator interface {
	NumFeatures() int
	NumOutputs() int
	Predict(x []float32, rows int, out []float32)
}

// formats are the artifact formats a model.yaml may name, by name.
var formats = map[string]func([]byte) (Evaluator, error){
	"xgboost-json": func(b []byte) (Evaluator, error) { return xgboost.Parse(b) },
	"onnx":         func(b []byte) (Evaluator, error) { return onnx.Parse(b) },
}

// maxArtifactBytes bounds a model's artifact file: a model is loaded whole
// into memory, where a larger one would leave a serve replica none to
// spare.
const maxArtifactBytes = 2 << 30

// ErrUnknownModel is returned for a model the repository does not have.
var ErrUnknownModel = errors.New("model: unknown model")

// gpuDevice is the process's GPU, opened by the first version that asks
// for one.
var gpuDevice = sync.OnceValues(func() (*cuda.Device, error) { return cuda.Open(0) })

// Version is one loaded model version.
type Version struct {
	Model   string
	Version int
	Spec    Spec
	Service *features.Service // the inputs: its features, then its on-demand features
	Device  string            // where it runs: cpu or gpu
	eval    Evaluator
	gpu     *onnx.GPUModel // eval's copy on the GPU, which predicts; nil on the CPU
	batcher *batch.Batcher
}

// NumOutputs is how many values a row's prediction has.
func (v *Version) NumOutputs() int { return v.eval.NumOutputs() }

// Predict computes rows rows of inputs through the version's batcher.
func (v *Version) Predict(ctx context.Context, in []float32, rows int) ([]float32, error) {
	return v.batcher.Do(ctx, in, rows)
}

// Model is a model's versions and aliases.
type Model struct {
	Name     string
	Versions map[int]*Version
	Aliases  Aliases
}

// Repository is every model of a directory, reloaded as it changes (Run).
type Repository struct {
	cfg     Config
	metrics *batch.Metrics
	models  atomic.Pointer[map[string]*Model]
	stamps  map[string]string      // model directory → what its files looked like when loaded
	reloads *prometheus.CounterVec // by model
	failed  *prometheus.CounterVec // by model
	info    *prometheus.Desc       // 1 per version serving, with its device

	// mu is held by Reload and Close: no reload starts batchers after
	// Close, or retires models Close would not wait for.
	mu       sync.Mutex
	closed   bool
	stop     chan struct{}  // closed by Close: retired batchers close at once
	retiring sync.WaitGroup // retired models' batchers, closing
}

// Config is what Open needs.
type Config struct {
	Dir         string                // required
	Definitions *features.Definitions // required
	Logger      *slog.Logger          // nil discards
	Registerer  prometheus.Registerer // metrics; nil registers none
}

// Open loads every model version under cfg.Dir; every problem is reported
// at once, with file and line.
func Open(cfg Config) (*Repository, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	metrics, err := batch.NewMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Repository{cfg: cfg, metrics: metrics, stamps: map[string]string{}, stop: make(chan struct{}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_serve_model_reloads_total",
			Help: "Reloads of a model that took effect, its versions loaded again or removed, by model."}, []string{"model"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quiver_serve_model_reload_failures_total",
			Help: "Model versions that did not load, by model: a model whose aliases name one keeps its previous versions; one no alias names is left out, and the model's reload takes effect without it."}, []string{"model"}),
		info: prometheus.NewDesc("quiver_serve_model_info",
			"1 for each model version serving, labelled with the device it predicts on (cpu or gpu).", []string{"model", "version", "device"}, nil),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(r.reloads, r.failed, infoCollector{r})
	}
	names, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("model repository: %w", err)
	}
	models := map[string]*Model{}
	var errs []error
	for _, n := range names {
		if !isModel(cfg.Dir, n) {
			continue
		}
		stamp, err := stampDir(filepath.Join(cfg.Dir, n.Name()))
		if err == nil && stamp == "" {
			continue // emptied
		}
		m, err := r.loadModel(n.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		models[m.Name], r.stamps[m.Name] = m, stamp
	}
	r.store(models)
	if err := errors.Join(errs...); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Models returns the models being served.
func (r *Repository) Models() map[string]*Model { return *r.models.Load() }

// Run reloads the repository every interval until ctx ends: a model whose
// files changed is loaded again, its versions warmed up, and takes traffic
// only then; one that fails to load is refused and its previous versions
// keep serving. Retired versions finish what they have queued.
func (r *Repository) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Reload()
		}
	}
}

// Reload loads the models whose files changed since they were loaded;
// after Close, none.
func (r *Repository) Reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	names, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.cfg.Logger.Error("model repository", "err", err)
		return
	}
	old := r.Models()
	next := maps.Clone(old)
	var retired []*Model
	changed := false
	seen := map[string]bool{}
	for _, n := range names {
		name := n.Name()
		if !isModel(r.cfg.Dir, n) {
			continue
		}
		stamp, err := stampDir(filepath.Join(r.cfg.Dir, name))
		if err == nil && stamp == "" {
			continue // emptied: gone
		}
		seen[name] = true
		if err != nil || stamp == r.stamps[name] {
			continue
		}
		m, err := r.loadModel(name)
		if err != nil {
			r.failed.WithLabelValues(name).Inc()
			r.cfg.Logger.Error("model reload refused: the previous versions keep serving", "model", name, "err", err)
			r.stamps[name] = stamp // not again until it changes
			continue
		}
		if prev := old[name]; prev != nil {
			retired = append(retired, prev)
		}
		next[name], r.stamps[name], changed = m, stamp, true
		r.reloads.WithLabelValues(name).Inc()
		r.cfg.Logger.Info("model reloaded", "model", name, "versions", versions(m), "production", m.Aliases.Production)
	}
	for name, m := range old {
		if !seen[name] {
			delete(next, name)
			delete(r.stamps, name)
			retired, changed = append(retired, m), true
			r.reloads.WithLabelValues(name).Inc()
			r.cfg.Logger.Warn("model removed: its directory is gone or holds no files", "model", name, "versions", versions(m))
		}
	}
	if !changed {
		return
	}
	r.store(next)
	for _, m := range retired {
		for n, v := range m.Versions {
			if next[m.Name] == nil || next[m.Name].Versions[n] == nil {
				r.metrics.Delete(v.Model, v.Version)
			}
		}
	}
	// Requests that routed to a retired version a moment ago still reach
	// its batcher: close it once they are in, or at Close.
	r.retiring.Go(func() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.stop:
		}
		for _, m := range retired {
			m.close(r.cfg.Logger)
		}
	})
}

// store makes models the ones serving.
func (r *Repository) store(models map[string]*Model) { r.models.Store(&models) }

// infoCollector gathers quiver_serve_model_info from the models serving at
// the time of the scrape, so that no scrape sees a reload half done.
type infoCollector struct{ r *Repository }

func (c infoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.r.info }

func (c infoCollector) Collect(ch chan<- prometheus.Metric) {
	models := c.r.models.Load()
	if models == nil { // scraped while New loads the first models
		return
	}
	for _, m := range *models {
		for n, v := range m.Versions {
			ch <- prometheus.MustNewConstMetric(c.r.info, prometheus.GaugeValue, 1, m.Name, strconv.Itoa(n), v.Device)
		}
	}
}

// isModel reports whether an entry of the repository dir is a model's
// directory: a directory, not hidden, and not the lost+found of a
// filesystem mounted as the repository.
func isModel(dir string, e fs.DirEntry) bool {
	return isDir(dir, e) && !strings.HasPrefix(e.Name(), ".") && e.Name() != "lost+found"
}

// isDir reports whether a directory entry of dir is a directory, or a
// link to one: a version a training job wrote elsewhere may be linked in.
func isDir(dir string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir()
	}
	info, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && info.IsDir()
}

// empty reports whether a directory holds no files, at any depth: what
// aws s3 sync --delete, which deletes files and not directories, leaves of
// a version or a model deleted from the bucket. Such a directory is no
// version, or no model.
func empty(dir string) bool {
	stamp, err := stampDir(dir)
	return err == nil && stamp == ""
}

// stampDir describes a model directory's files, through links: names,
// sizes, times and, on Linux, inodes (fileID); a link to nothing, by the
// link. Past a few levels, a directory is described by its own time alone
// (a link may loop).
func stampDir(dir string) (string, error) {
	var b strings.Builder
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			info, err := os.Stat(path) // through a link
			if err != nil {
				// A link to nothing (a training run's directory since
				// deleted) is described by the link itself.
				if info, err = os.Lstat(path); err != nil {
					return err
				}
			}
			if info.IsDir() && depth < 4 {
				if err := walk(path, depth+1); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(&b, "%s %d %d %s\n", path, info.Size(), info.ModTime().UnixNano(), fileID(info))
		}
		return nil
	}
	err := walk(dir, 0)
	return b.String(), err
}

func (r *Repository) loadModel(name string) (*Model, error) {
	cfg := r.cfg
	dir := filepath.Join(cfg.Dir, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Name: name, Versions: map[int]*Version{}}
	var broken []error
	highest := 0 // of the version directories, loaded or not
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n < 1 || !isDir(dir, e) || empty(filepath.Join(dir, e.Name())) {
			continue
		}
		highest = max(highest, n)
		// 01 or +1 would be version 1 here and not found where a version
		// is looked up by its number (drift detectors), and beside 1, which
		// served would be a matter of sort order.
		if e.Name() != strconv.Itoa(n) {
			broken = append(broken, fmt.Errorf("%s: a version's directory is its number: name it %d", filepath.Join(dir, e.Name()), n))
			continue
		}
		v, err := loadVersion(cfg, r.metrics, name, n, filepath.Join(dir, e.Name()))
		if err != nil {
			broken = append(broken, err)
			continue
		}
		m.Versions[n] = v
	}
	if len(m.Versions) == 0 {
		return nil, errors.Join(append(broken, fmt.Errorf("%s: no versions (want %s/<version>/model.yaml)", dir, dir))...)
	}
	// A broken version is left out; the aliases must name loaded ones.
	if err := m.loadAliases(filepath.Join(dir, "aliases.yaml"), highest); err != nil {
		m.close(r.cfg.Logger)
		return nil, errors.Join(append(broken, err)...)
	}
	for _, err := range broken {
		r.failed.WithLabelValues(name).Inc()
		r.cfg.Logger.Error("model version refused: the model serves without it", "model", name, "err", err)
	}
	return m, nil
}

func loadVersion(cfg Config, metrics *batch.Metrics, name string, version int, dir string) (*Version, error) {
	path := filepath.Join(dir, "model.yaml")
	var spec Spec
	f, err := decodeFile(path, &spec)
	if err != nil {
		return nil, err
	}
	v := &Version{Model: name, Version: version, Spec: spec, Device: deviceCPU}
	var problems []string
	load := formats[spec.Format]
	if load == nil {
		problems = append(problems, fmt.Sprintf("%s: %q is not a format (want %s)", f.at("format"), spec.Format, strings.Join(formatNames(), " or ")))
	}
	if spec.Artifact == "" {
		problems = append(problems, fmt.Sprintf("%s: missing", f.at("artifact")))
	}
	if spec.Inputs.FeatureService == "" {
		problems = append(problems, fmt.Sprintf("%s: missing", f.at("inputs", "feature_service")))
	} else if v.Service = cfg.Definitions.Service(spec.Inputs.FeatureService); v.Service == nil {
		problems = append(problems, fmt.Sprintf("%s: no feature service %q in the definitions", f.at("inputs", "feature_service"), spec.Inputs.FeatureService))
	}
	switch spec.Output {
	case "probability", "score", "":
	default:
		problems = append(problems, fmt.Sprintf("%s: %q: want probability or score", f.at("output"), spec.Output))
	}
	switch spec.Device {
	case deviceCPU, deviceGPU, "", "auto":
	default:
		problems = append(problems, fmt.Sprintf("%s: %q: want cpu, gpu or auto", f.at("device"), spec.Device))
	}
	switch spec.Precision {
	case "", "fp32", "tf32":
	default:
		problems = append(problems, fmt.Sprintf("%s: %q: want fp32 or tf32", f.at("precision"), spec.Precision))
	}
	if v.Service != nil {
		_, ps := detector(f, spec, dir, v.Service)
		problems = append(problems, ps...)
	}
	if spec.Batching.MaxBatchSize < 0 || spec.Batching.QueueCapacity < 0 || spec.Batching.MaxQueueDelay < 0 {
		problems = append(problems, fmt.Sprintf("%s: sizes and delays must not be negative", f.at("batching")))
	}
	if spec.Batching.QueueCapacity > batch.MaxQueueCapacity {
		problems = append(problems, fmt.Sprintf("%s: %d: want at most %d", f.at("batching", "queue_capacity"), spec.Batching.QueueCapacity, batch.MaxQueueCapacity))
	}
	if spec.Batching.MaxQueueDelay > batch.MaxQueueDelayLimit {
		problems = append(problems, fmt.Sprintf("%s: %v: want at most %v", f.at("batching", "max_queue_delay"), spec.Batching.MaxQueueDelay, batch.MaxQueueDelayLimit))
	}
	if load != nil && spec.Artifact != "" {
		art, err := regularfile.Read(inDir(dir, spec.Artifact), maxArtifactBytes)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.at("artifact"), err))
		} else {
			eval, err := load(art)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %s: %v", f.at("artifact"), spec.Artifact, err))
			} else {
				v.eval = eval // not a nil model in an interface
			}
		}
	}
	if v.eval != nil && v.Service != nil {
		if want := len(v.Service.Features) + len(v.Service.OnDemand); v.eval.NumFeatures() != want {
			problems = append(problems, fmt.Sprintf("%s: the model takes %d inputs, feature service %s gives %d", f.at("inputs", "feature_service"), v.eval.NumFeatures(), v.Service.Name, want))
		}
	}
	if v.Service != nil {
		problems = append(problems, checkInputs(f, cfg.Definitions, v.Service)...)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	// Warm up before taking traffic: a zero row must predict finite numbers.
	zero := make([]float32, v.eval.NumFeatures())
	out := make([]float32, v.eval.NumOutputs())
	v.eval.Predict(zero, 1, out)
	for _, o := range out {
		if math.IsNaN(float64(o)) || math.IsInf(float64(o), 0) {
			return nil, fmt.Errorf("%s: the model predicts %v for a row of zeros", f.at("artifact"), out)
		}
	}
	workers := 1
	if spec.Device != deviceCPU {
		g, err := onGPU(v.eval, spec, zero, out)
		switch {
		case err == nil:
			v.gpu, v.Device, workers = g, deviceGPU, g.Lanes()
			dev, _ := gpuDevice()
			cfg.Logger.Info("model on the GPU", "model", name, "version", version, "gpu", dev.Name, "cuda", dev.Versions, "device_mib", g.DeviceBytes()>>20)
		case spec.Device == deviceGPU:
			return nil, fmt.Errorf("%s: %w", f.at("device"), err)
		default:
			cfg.Logger.Info("model on the CPU", "model", name, "version", version, "reason", err)
		}
	}
	b, err := batch.New(batch.Config{
		Inputs: v.eval.NumFeatures(), Outputs: v.eval.NumOutputs(),
		MaxBatchSize: spec.Batching.MaxBatchSize, MaxQueueDelay: spec.Batching.MaxQueueDelay, QueueCapacity: spec.Batching.QueueCapacity,
		Workers: workers, Model: v.Model, Version: v.Version, Metrics: metrics,
	}, func(_ context.Context, in []float32, rows int, out []float32) error {
		if v.gpu != nil {
			return v.gpu.Predict(in, rows, out)
		}
		v.eval.Predict(in, rows, out)
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", path, err), v.release())
	}
	v.batcher = b
	return v, nil
}

// The devices a version runs on.
const (
	deviceCPU = "cpu"
	deviceGPU = "gpu"
)

// gpuAgreement is how far a GPU's outputs for a row of zeros may be from
// the CPU's, relative to their size (or absolute below 1): TF32 rounds a
// dense layer's inputs to 10 bits of mantissa.
const gpuAgreement = 1e-2

// onGPU copies an ONNX model to the process's GPU and checks that it
// predicts for a row of zeros what the CPU predicted, want.
func onGPU(eval Evaluator, spec Spec, zero, want []float32) (*onnx.GPUModel, error) {
	m, ok := eval.(*onnx.Model)
	if !ok {
		return nil, fmt.Errorf("%s models run on the CPU only: want device cpu or auto", spec.Format)
	}
	dev, err := gpuDevice()
	if err != nil {
		return nil, err
	}
	g, err := m.OnGPU(dev, onnx.GPUOptions{TF32: spec.Precision == "tf32"})
	if err != nil {
		return nil, err
	}
	got := make([]float32, len(want))
	err = g.Predict(zero, 1, got)
	for i := range want {
		if err == nil && !(math.Abs(float64(got[i]-want[i])) <= gpuAgreement*max(1, math.Abs(float64(want[i])))) {
			err = fmt.Errorf("the GPU predicts %v for a row of zeros, the CPU %v", got, want)
		}
	}
	if err != nil {
		return nil, errors.Join(err, g.Close())
	}
	return g, nil
}

// release frees the version's GPU memory, once its batcher is closed.
func (v *Version) release() error {
	if v.gpu == nil {
		return nil
	}
	return v.gpu.Close()
}

// checkInputs refuses services with string or timestamp features: models
// take numbers (and booleans as 0 or 1); and features that name no version,
// which a new version of their view would change under the model.
func checkInputs(f *yamlFile, defs *features.Definitions, svc *features.Service) []string {
	var problems []string
	for _, r := range svc.Features {
		if r.Version == 0 {
			problems = append(problems, fmt.Sprintf("%s: feature %s names no version: a model's inputs must (%s@N:%s), lest a new version of %s change them", f.at("inputs", "feature_service"), r, r.View, r.Feature, r.View))
			continue
		}
		view, feat, err := defs.Resolve(r)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.at("inputs", "feature_service"), err))
			continue
		}
		if t := feat.ValueType(defs.Source(view.Source)); t == features.TypeString || t == features.TypeTimestamp {
			problems = append(problems, fmt.Sprintf("%s: feature %s is a %s, not a number", f.at("inputs", "feature_service"), r, t))
		}
	}
	for _, o := range svc.OnDemand {
		if t := o.Type(); t == features.TypeString {
			problems = append(problems, fmt.Sprintf("%s: on-demand feature %s is a string, not a number", f.at("inputs", "feature_service"), o.Name))
		}
	}
	return problems
}

func formatNames() []string {
	var names []string
	for n := range formats {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// loadAliases reads the aliases, or without a file makes the highest
// version production; that version must have loaded, so that a broken
// model.yaml written over the version serving keeps it serving, not the
// one before it.
func (m *Model) loadAliases(path string, highest int) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if m.Versions[highest] == nil {
			return fmt.Errorf("%s: version %d, the highest, did not load: with no aliases.yaml it is production", filepath.Dir(path), highest)
		}
		m.Aliases.Production = highest
		return nil
	}
	f, err := decodeFile(path, &m.Aliases)
	if err != nil {
		return err
	}
	var problems []string
	check := func(v int, keys ...string) {
		if _, ok := m.Versions[v]; !ok {
			problems = append(problems, fmt.Sprintf("%s: no version %d of %s", f.at(keys...), v, m.Name))
		}
	}
	if m.Aliases.Production == 0 {
		problems = append(problems, fmt.Sprintf("%s: missing", f.at("production")))
	} else {
		check(m.Aliases.Production, "production")
	}
	if c := m.Aliases.Canary; c != nil {
		if c.Version == 0 {
			problems = append(problems, fmt.Sprintf("%s: missing", f.at("canary", "version")))
		} else {
			check(c.Version, "canary", "version")
		}
		// Not a share of 0 by default: a canary without its traffic would
		// take none, unsaid.
		if !f.has("canary", "traffic") {
			problems = append(problems, fmt.Sprintf("%s: missing (want a share from 0 to 1)", f.at("canary", "traffic")))
		} else if !(c.Traffic >= 0 && c.Traffic <= 1) { // NaN too
			problems = append(problems, fmt.Sprintf("%s: %v: want a share from 0 to 1", f.at("canary", "traffic"), c.Traffic))
		}
	}
	if m.Aliases.Shadow != 0 {
		check(m.Aliases.Shadow, "shadow")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

func versions(m *Model) []int {
	var vs []int
	for v := range m.Versions {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// Route returns the version that answers a request for an entity: the
// canary for its traffic share of entities (the same entity always gets
// the same version), else production; and the shadow version, if any, that
// also runs, unreturned.
func (r *Repository) Route(name, entity string) (serve, shadow *Version, err error) {
	m := r.Models()[name]
	if m == nil {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
	}
	serve = m.Versions[m.Aliases.Production]
	if c := m.Aliases.Canary; c != nil {
		// A hash stable across replicas and restarts, of the model and the
		// canary version too: each canary takes its own entities. The
		// highest hashes divide to 1: a share of 1 takes them too.
		if c.Traffic >= 1 || float64(xxhash.Sum64String(m.Name+"\x00"+strconv.Itoa(c.Version)+"\x00"+entity))/float64(math.MaxUint64) < c.Traffic {
			serve = m.Versions[c.Version]
		}
	}
	if m.Aliases.Shadow != 0 {
		shadow = m.Versions[m.Aliases.Shadow]
	}
	return serve, shadow, nil
}

// Version returns a model's version, or its production version for 0.
func (r *Repository) Version(name string, version int) (*Version, error) {
	m, err := r.Model(name)
	if err != nil {
		return nil, err
	}
	return m.Version(version)
}

// Model returns a model being served. Its versions and aliases stay as they
// are: a reload replaces the model, it does not change it.
func (r *Repository) Model(name string) (*Model, error) {
	m := r.Models()[name]
	if m == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
	}
	return m, nil
}

// Version returns one of the model's versions, or its production version
// for 0.
func (m *Model) Version(version int) (*Version, error) {
	if version == 0 {
		version = m.Aliases.Production
	}
	v := m.Versions[version]
	if v == nil {
		return nil, fmt.Errorf("%w %q version %d", ErrUnknownModel, m.Name, version)
	}
	return v, nil
}

// NumFeatures is how many values a row of inputs has.
func (v *Version) NumFeatures() int { return v.eval.NumFeatures() }

// Close stops every version's batcher, those of versions a reload retired
// too, and returns once they have stopped. Reload does nothing after it.
func (r *Repository) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	r.retiring.Wait()
	for _, m := range r.Models() {
		m.close(r.cfg.Logger)
	}
}

// close stops the model's batchers, then frees what its versions hold on
// the GPU.
func (m *Model) close(log *slog.Logger) {
	for _, v := range m.Versions {
		if v.batcher != nil {
			v.batcher.Close()
		}
		if err := v.release(); err != nil {
			log.Error("free a model version's GPU memory", "model", v.Model, "version", v.Version, "err", err)
		}
	}
}
