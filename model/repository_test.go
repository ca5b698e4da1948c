package model_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cuda/cudatest"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/model/batch"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

func fraudDefs(t *testing.T) *features.Definitions {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

func TestOpen(t *testing.T) {
	reg := prometheus.NewRegistry()
	repo, err := model.Open(model.Config{Dir: "testdata/models", Definitions: fraudDefs(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	// An XGBoost model of device auto predicts on the CPU, and the metrics
	// say so.
	want := `
# HELP quiver_serve_model_info 1 for each model version serving, labelled with the device it predicts on (cpu or gpu).
# TYPE quiver_serve_model_info gauge
quiver_serve_model_info{device="cpu",model="fraud",version="1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "quiver_serve_model_info"); err != nil {
		t.Error(err)
	}
	v, shadow, err := repo.Route("fraud", "u1")
	if err != nil || v.Version != 1 || shadow != nil {
		t.Fatalf("route: %v, %v, %v; want version 1, no shadow", v, shadow, err)
	}
	in := make([]float32, 2*10)
	in[9], in[19] = 0.5, 4 // amount_vs_avg
	out, err := v.Predict(context.Background(), in, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] <= 0 || out[0] >= 1 || out[1] <= out[0] {
		t.Fatalf("predictions %v: want probabilities, higher for the larger amount_vs_avg", out)
	}
	if _, _, err := repo.Route("nope", "u1"); err == nil {
		t.Error("an unknown model routes")
	}
}

// repoWith builds a repository with the test model's artifact and the
// given model.yaml and aliases.yaml (empty: none).
func repoWith(t *testing.T, spec, aliases string) string {
	dir := t.TempDir()
	vdir := filepath.Join(dir, "fraud", "1")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	art, err := os.ReadFile("testdata/models/fraud/1/model.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, "model.json"), art, 0o644)
	os.WriteFile(filepath.Join(vdir, "model.yaml"), []byte(spec), 0o644)
	if aliases != "" {
		os.WriteFile(filepath.Join(dir, "fraud", "aliases.yaml"), []byte(aliases), 0o644)
	}
	return dir
}

const goodSpec = "format: xgboost-json\nartifact: model.json\ninputs: {feature_service: fraud_v1}\n"

func TestBadRepository(t *testing.T) {
	defs := fraudDefs(t)
	fifo := filepath.Join(t.TempDir(), "model.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, spec, aliases string
		want                []string
	}{
		{"unknown key", goodSpec + "batchign: {}\n", "", []string{"model.yaml:4: batchign: field batchign not found"}},
		{"aliases: unknown key in a flow mapping, the key named", goodSpec, "production: 1\ncanary: {version: 1, trafic: 0.5}\n", []string{"aliases.yaml:2: canary.trafic: field trafic not found"}},
		{"wrong type, key named", goodSpec + "batching: {queue_capacity: 5, max_batch_size: lots}\n", "", []string{"model.yaml:4: batching.max_batch_size: cannot unmarshal !!str `lots` into int"}},
		{"queue_capacity above its bound", goodSpec + "batching:\n  max_batch_size: 8\n  queue_capacity: 65537\n", "", []string{"model.yaml:6: batching.queue_capacity: 65537: want at most 65536"}},
		{"max_queue_delay above its bound", goodSpec + "batching:\n  max_queue_delay: 1h\n", "", []string{"model.yaml:5: batching.max_queue_delay: 1h0m0s: want at most 1s"}},
		{"sizes with fractions, every one reported", goodSpec + "batching: {max_batch_size: 2.5, queue_capacity: 1e3}\n", "", []string{
			"model.yaml:4: batching.max_batch_size: 2.5: want a whole number", "model.yaml:4: batching.queue_capacity: 1e3: want a whole number"}},
		{"drift: min_samples with a fraction", goodSpec + "drift: {min_samples: 10.5}\n", "", []string{"model.yaml:4: drift.min_samples: 10.5: want a whole number"}},
		{"aliases: versions with fractions", goodSpec, "production: 1.9\ncanary: {version: 1.0, traffic: 0.5}\n", []string{
			"aliases.yaml:1: production: 1.9: want a whole number", "aliases.yaml:2: canary.version: 1.0: want a whole number"}},
		{"aliases: wrong type, key named", goodSpec, "production: 1\ncanary: 2\n", []string{"aliases.yaml:2: canary: cannot unmarshal !!int `2` into model.Canary"}},
		{"unknown format", strings.Replace(goodSpec, "xgboost-json", "pmml", 1), "", []string{`model.yaml:1: format: "pmml" is not a format (want onnx or xgboost-json)`}},
		{"unknown service", strings.Replace(goodSpec, "fraud_v1", "fraud_v9", 1), "", []string{`model.yaml:3: inputs.feature_service: no feature service "fraud_v9"`}},
		{"missing artifact", strings.Replace(goodSpec, "model.json", "nope.json", 1), "", []string{"model.yaml:2: artifact: stat", "nope.json: no such file"}},
		// Neither blocks nor fills the memory.
		{"artifact a FIFO", strings.Replace(goodSpec, "model.json", fifo, 1), "", []string{"model.yaml:2: artifact: " + fifo + ": not a regular file"}},
		{"artifact a device", strings.Replace(goodSpec, "model.json", "/dev/zero", 1), "", []string{"model.yaml:2: artifact: /dev/zero: not a regular file"}},
		{"xgboost on the gpu", goodSpec + "device: gpu\n", "", []string{"model.yaml:4: device: xgboost-json models run on the CPU only: want device cpu or auto"}},
		{"bad precision", goodSpec + "precision: fp16\n", "", []string{`model.yaml:4: precision: "fp16": want fp32 or tf32`}},
		{"bad device and output, all reported", goodSpec + "device: tpu\noutput: logits\n", "", []string{`model.yaml:4: device: "tpu"`, `model.yaml:5: output: "logits"`}},
		{"aliases: unknown version", goodSpec, "production: 7\n", []string{"aliases.yaml:1: production: no version 7 of fraud"}},
		{"drift: window below min_samples", goodSpec + "drift: {window: 50, min_samples: 80}\n", "", []string{"model.yaml:4: drift.min_samples: 80 is more than the window's 50 predictions"}},
		{"drift: window of nothing, not the default", goodSpec + "drift:\n  window: 0\n", "", []string{"model.yaml:5: drift.window: 0: want at least one prediction or a positive duration"}},
		{"drift: window of no time", goodSpec + "drift:\n  window: 0s\n", "", []string{"model.yaml:5: drift.window: 0s: want at least one prediction or a positive duration"}},
		{"drift: no windows in a row, not the default", goodSpec + "drift:\n  consecutive: 0\n", "", []string{"model.yaml:5: drift.consecutive: 0: want at least 1"}},
		{"drift: no samples, not the default", goodSpec + "drift:\n  window: 5m\n  min_samples: 0\n", "", []string{"model.yaml:6: drift.min_samples: 0: want at least 1"}},
		{"drift: no threshold", goodSpec + "drift:\n  psi: 0\n  js: 0\n", "", []string{"model.yaml:5: drift.psi: no threshold above 0, so no feature could drift"}},
		{"drift: psi left out for js 0", goodSpec + "drift:\n  js: 0\n", "", []string{"model.yaml:5: drift.js: no threshold above 0"}},
		{"aliases: bad canary", goodSpec, "production: 1\ncanary: {version: 1, traffic: 1.5}\n", []string{"aliases.yaml:2: canary.traffic: 1.5: want a share from 0 to 1"}},
		{"aliases: canary without its traffic", goodSpec, "production: 1\ncanary: {version: 1}\n", []string{"aliases.yaml:2: canary.traffic: missing (want a share from 0 to 1)"}},
		{"aliases: canary without its version", goodSpec, "production: 1\ncanary:\n  traffic: 0.1\n", []string{"aliases.yaml:2: canary.version: missing"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := model.Open(model.Config{Dir: repoWith(t, c.spec, c.aliases), Definitions: defs})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// The model's inputs must be the service's: another service of another
// size is refused, and so is one naming a feature without its version,
// which a new version of its view would change under the model.
func TestServiceInputs(t *testing.T) {
	src, err := os.ReadFile("../examples/fraud/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ feature, want string }{
		{"user_txn@1:txn_count_1h", "the model takes 10 inputs, feature service small gives 1"},
		{"user_txn:txn_count_1h", "model.yaml:3: inputs.feature_service: feature user_txn:txn_count_1h names no version"},
	} {
		defs, err := features.Parse("defs.yaml", append(src, "\n  - name: small\n    features: ["+c.feature+"]\n"...))
		if err != nil {
			t.Fatal(err)
		}
		_, err = model.Open(model.Config{Dir: repoWith(t, strings.Replace(goodSpec, "fraud_v1", "small", 1), ""), Definitions: defs})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v", c.feature, err)
		}
	}
}

// An artifact that does not load (a copy still in progress, say) is an
// error, not a crash.
func TestBrokenArtifact(t *testing.T) {
	art, err := os.ReadFile("testdata/models/fraud/1/model.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, broken := range map[string][]byte{"truncated": art[:len(art)/2], "empty learner": []byte(`{"learner":{}}`)} {
		t.Run(name, func(t *testing.T) {
			dir := repoWith(t, goodSpec, "")
			os.WriteFile(filepath.Join(dir, "fraud", "1", "model.json"), broken, 0o644)
			_, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
			if err == nil || !strings.Contains(err.Error(), "model.yaml:2: artifact: model.json: ") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// A broken version no alias names is left out, and the model serves
// without it; one an alias names refuses the model, saying why.
func TestBrokenVersion(t *testing.T) {
	for _, c := range []struct{ aliases, want string }{{"production: 1\n", ""}, {"production: 2\n", `model.yaml:4: device: "tpu"`}} {
		dir := repoWith(t, goodSpec, c.aliases)
		v2 := filepath.Join(dir, "fraud", "2")
		os.MkdirAll(v2, 0o755)
		os.WriteFile(filepath.Join(v2, "model.yaml"), []byte(goodSpec+"device: tpu\n"), 0o644)
		repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
		if c.want != "" {
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "production: no version 2") {
				t.Errorf("%q: got %v", c.aliases, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.aliases, err)
		}
		if m := repo.Models()["fraud"]; len(m.Versions) != 1 || m.Versions[1] == nil {
			t.Errorf("%q: versions %v, want 1 alone", c.aliases, m.Versions)
		}
		repo.Close()
	}
}

// canaryRepo returns a repository of two copies of the fraud model, the
// second a canary taking share of the traffic.
func canaryRepo(t *testing.T, share float64) string {
	dir := repoWith(t, goodSpec, fmt.Sprintf("production: 1\ncanary: {version: 2, traffic: %v}\n", share))
	v2 := filepath.Join(dir, "fraud", "2")
	os.MkdirAll(v2, 0o755)
	for _, f := range []string{"model.json", "model.yaml"} {
		b, _ := os.ReadFile(filepath.Join(dir, "fraud", "1", f))
		os.WriteFile(filepath.Join(v2, f), b, 0o644)
	}
	return dir
}

// A canary takes its share of entities, each entity always the same way.
func TestCanary(t *testing.T) {
	repo, err := model.Open(model.Config{Dir: canaryRepo(t, 0.1), Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	canary := 0
	for i := range 10_000 {
		user := fmt.Sprintf("u%d", i)
		v, _, _ := repo.Route("fraud", user)
		again, _, _ := repo.Route("fraud", user)
		if v.Version != again.Version {
			t.Fatalf("%s went to %d, then %d", user, v.Version, again.Version)
		}
		if v.Version == 2 {
			canary++
		}
	}
	if share := float64(canary) / 10_000; math.Abs(share-0.1) > 0.03 {
		t.Errorf("canary share %.3f, want 0.1 ± 0.03", share)
	}
}

// A canary share of 1 takes every entity, and of 0 none: the ends of the
// range are valid shares.
func TestCanaryEnds(t *testing.T) {
	for _, share := range []float64{0, 1} {
		repo, err := model.Open(model.Config{Dir: canaryRepo(t, share), Definitions: fraudDefs(t)})
		if err != nil {
			t.Fatalf("share %v: %v", share, err)
		}
		want := 1
		if share == 1 {
			want = 2
		}
		// Users, and keys hashing to the very top of the range.
		keys := []string{"\xff\xff", "zzzzzzzz"}
		for i := range 1000 {
			keys = append(keys, fmt.Sprintf("u%d", i))
		}
		for _, k := range keys {
			if v, _, _ := repo.Route("fraud", k); v.Version != want {
				t.Fatalf("share %v: %q went to version %d, want %d", share, k, v.Version, want)
			}
		}
		repo.Close()
	}
}

// model.yaml's artifact and profile may be absolute paths, such as where a
// training job wrote them.
func TestAbsolutePaths(t *testing.T) {
	defs := fraudDefs(t)
	elsewhere := t.TempDir()
	art, err := os.ReadFile("testdata/models/fraud/1/model.json")
	if err != nil {
		t.Fatal(err)
	}
	artifact := filepath.Join(elsewhere, "model.json")
	os.WriteFile(artifact, art, 0o644)
	var prof drift.Profile
	for _, c := range defs.Service("fraud_v1").Columns() {
		prof.Features = append(prof.Features, drift.NumberProfile(c, "float", []float64{1, 2, 3, 4}, 0))
	}
	profile := filepath.Join(elsewhere, "train.parquet.profile.json")
	if err := drift.WriteProfile(profile, prof); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("format: xgboost-json\nartifact: %s\ninputs: {feature_service: fraud_v1}\nprofile: %s\n", artifact, profile)
	dir := repoWith(t, spec, "")
	os.Remove(filepath.Join(dir, "fraud", "1", "model.json")) // only the absolute path has it
	repo, err := model.Open(model.Config{Dir: dir, Definitions: defs})
	if err != nil {
		t.Fatal(err)
	}
	repo.Close()
	d, err := model.LoadDetector(dir, defs, "fraud", 1)
	if err != nil || d == nil {
		t.Fatalf("LoadDetector: %v, %v; want the profile's detector", d, err)
	}
}

// LoadDetector reads versions of the repository's models only: a name that
// is a path, even one to a model's directory, or a version the repository
// would not serve, is an unknown model (a record of the prediction log
// names them).
func TestLoadDetectorUnknown(t *testing.T) {
	defs := fraudDefs(t)
	dir := repoWith(t, goodSpec, "")
	if _, err := model.LoadDetector(dir, defs, "fraud", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		version int
	}{{"fraud/", 1}, {"./fraud", 1}, {"x/../fraud", 1}, {"", 1}, {".", 1}, {"fraud", 0}} {
		if _, err := model.LoadDetector(dir, defs, c.name, c.version); !errors.Is(err, model.ErrUnknownModel) {
			t.Errorf("%q version %d: %v, want ErrUnknownModel", c.name, c.version, err)
		}
	}
}

// addVersion copies version 1 of the fraud model to version n, with
// model.yaml spec, at dir (a path outside the repository, linked in, when
// link is set).
func addVersion(t *testing.T, repo string, n int, spec, link string) {
	t.Helper()
	dir := filepath.Join(repo, "fraud", fmt.Sprint(n))
	if link != "" {
		if err := os.Symlink(link, dir); err != nil {
			t.Fatal(err)
		}
		dir = link
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	art, err := os.ReadFile(filepath.Join(repo, "fraud", "1", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "model.json"), art, 0o644)
	os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(spec), 0o644)
}

// Without aliases.yaml the highest version serves; a broken model.yaml
// written over it keeps it serving (the reload is refused), rather than
// handing production to the version before it.
func TestBrokenHighestVersion(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	addVersion(t, dir, 2, goodSpec, "")
	reg := prometheus.NewRegistry()
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	if v, err := repo.Version("fraud", 0); err != nil || v.Version != 2 {
		t.Fatalf("production %v, %v; want version 2", v, err)
	}
	os.WriteFile(filepath.Join(dir, "fraud", "2", "model.yaml"), []byte(goodSpec+"device: gpu-typo\n"), 0o644)
	repo.Reload()
	if v, err := repo.Version("fraud", 0); err != nil || v.Version != 2 {
		t.Errorf("after a broken model.yaml of version 2: production %v, %v; want version 2 kept", v, err)
	}
	if n := counter(t, reg, "quiver_serve_model_reload_failures_total", "fraud"); n != 1 {
		t.Errorf("%v reload failures of model fraud, want 1", n)
	}
	if _, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)}); err == nil ||
		!strings.Contains(err.Error(), "version 2, the highest, did not load") || !strings.Contains(err.Error(), `"gpu-typo"`) {
		t.Errorf("opening with the highest version broken: %v", err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, model string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && m.GetLabel()[0].GetName() == "model" && m.GetLabel()[0].GetValue() == model {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{model=%q}", name, model)
	return 0
}

// A version directory may be a link to where a training job wrote it, and
// a model's directory a link too; a change behind a link reloads.
func TestLinkedDirectories(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	elsewhere := filepath.Join(t.TempDir(), "run-42")
	addVersion(t, dir, 2, goodSpec, elsewhere)
	if err := os.Symlink(filepath.Join(dir, "fraud"), filepath.Join(dir, "fraud-link")); err != nil {
		t.Fatal(err)
	}
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	for _, name := range []string{"fraud", "fraud-link"} {
		if v, err := repo.Version(name, 0); err != nil || v.Version != 2 {
			t.Errorf("%s: production %v, %v; want the linked version 2", name, v, err)
		}
	}
	os.WriteFile(filepath.Join(elsewhere, "model.yaml"), []byte(goodSpec+"batching: {max_batch_size: 7}\n"), 0o644)
	repo.Reload()
	if v, err := repo.Version("fraud", 2); err != nil || v.Spec.Batching.MaxBatchSize != 7 {
		t.Errorf("after model.yaml changed behind the link: %+v, %v; want max_batch_size 7", v, err)
	}
}

// A model whose directory is gone stops serving, and says so.
func TestModelRemoved(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t), Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	os.RemoveAll(filepath.Join(dir, "fraud"))
	repo.Reload()
	if _, err := repo.Version("fraud", 0); !errors.Is(err, model.ErrUnknownModel) {
		t.Errorf("after its directory went: %v, want ErrUnknownModel", err)
	}
	if n, err := testutil.GatherAndCount(reg, "quiver_serve_model_info"); err != nil || n != 0 {
		t.Errorf("quiver_serve_model_info has %d series (%v) with no model, want none", n, err)
	}
	if !strings.Contains(logs.String(), "model removed: its directory is gone") {
		t.Errorf("logs %q do not say the model was removed", logs.String())
	}
}

// Two models' canaries, and two canaries of a model, take different
// entities: as many in both as chance gives.
func TestCanaryPopulations(t *testing.T) {
	dir := canaryRepo(t, 0.1)
	if err := os.CopyFS(filepath.Join(dir, "other"), os.DirFS(filepath.Join(dir, "fraud"))); err != nil {
		t.Fatal(err)
	}
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	both := 0
	for i := range 10_000 {
		u := fmt.Sprintf("u%d", i)
		a, _, _ := repo.Route("fraud", u)
		b, _, _ := repo.Route("other", u)
		if a.Version == 2 && b.Version == 2 {
			both++
		}
	}
	// ~100 (1%) if independent, ~1,000 if the same.
	if both > 200 {
		t.Errorf("%d of 10,000 entities in both canaries: they take the same entities", both)
	}
}

// A link to nothing in a model's directory (a version linked to a training
// run's directory since deleted) is no reason to stop reloading the
// model: a change beside it takes effect.
func TestReloadPastDanglingLink(t *testing.T) {
	dir := repoWith(t, goodSpec, "production: 1\n")
	addVersion(t, dir, 2, goodSpec, "")
	if err := os.Symlink(filepath.Join(t.TempDir(), "run-41"), filepath.Join(dir, "fraud", "3")); err != nil {
		t.Fatal(err)
	}
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	os.WriteFile(filepath.Join(dir, "fraud", "aliases.yaml"), []byte("production: 2\n"), 0o644)
	repo.Reload()
	if v, err := repo.Version("fraud", 0); err != nil || v.Version != 2 {
		t.Errorf("after aliases.yaml named version 2: production %v; want version 2", versionOf(v, err))
	}
}

// versionOf is what a test says of a version it got: its number, or the
// error.
func versionOf(v *model.Version, err error) any {
	if err != nil {
		return err
	}
	return v.Version
}

// A filesystem's lost+found at the repository's root (a fresh ext4 volume
// mounted as the repository) is no model: serve opens the others.
func TestLostAndFound(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	if _, ok := repo.Models()["lost+found"]; ok || len(repo.Models()) != 1 {
		t.Errorf("models %v, want fraud alone", repo.Models())
	}
}

// emptyDir deletes the files under dir and leaves its directories, as aws
// s3 sync --delete (the chart's models-sync) does when a version or a
// model is deleted from the bucket.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Remove(path)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A version, or a model, whose files were deleted and directories left is
// gone: without aliases.yaml the highest version left serves, a model left
// with empty directories alone stops serving, and the repository opens.
func TestEmptiedDirectories(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	addVersion(t, dir, 2, goodSpec, "")
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	emptyDir(t, filepath.Join(dir, "fraud", "2"))
	repo.Reload()
	if v, err := repo.Version("fraud", 0); err != nil || v.Version != 1 {
		t.Errorf("version 2 emptied: production %v; want version 1", versionOf(v, err))
	}
	again, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatalf("version 2 emptied: %v", err)
	}
	again.Close()

	emptyDir(t, filepath.Join(dir, "fraud"))
	repo.Reload()
	if _, err := repo.Version("fraud", 0); !errors.Is(err, model.ErrUnknownModel) {
		t.Errorf("model emptied: %v, want ErrUnknownModel", err)
	}
	again, err = model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatalf("model emptied: %v", err)
	}
	again.Close()
}

// TestRemovedVersionSeries: a version removed, or its model removed,
// leaves no batcher series behind; a version still serving keeps them.
func TestRemovedVersionSeries(t *testing.T) {
	dir := repoWith(t, goodSpec, "production: 1\n")
	addVersion(t, dir, 2, goodSpec, "")
	reg := prometheus.NewRegistry()
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	series := func() map[string]int {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "quiver_serve_batch_") {
				for _, m := range mf.GetMetric() {
					n[m.GetLabel()[0].GetValue()+"@"+m.GetLabel()[1].GetValue()]++
				}
			}
		}
		return n
	}
	if n := series(); n["fraud@1"] != 5 || n["fraud@2"] != 5 {
		t.Fatalf("batcher series %v, want 5 of each version", n)
	}
	if err := os.RemoveAll(filepath.Join(dir, "fraud", "2")); err != nil {
		t.Fatal(err)
	}
	repo.Reload()
	if n := series(); n["fraud@1"] != 5 || n["fraud@2"] != 0 {
		t.Errorf("version 2 removed: batcher series %v, want fraud@1's 5 alone", n)
	}
	if err := os.RemoveAll(filepath.Join(dir, "fraud")); err != nil {
		t.Fatal(err)
	}
	repo.Reload()
	if n := series(); len(n) != 0 {
		t.Errorf("model removed: batcher series %v, want none", n)
	}
}

// Close stops the batchers of the versions a reload retired too, rather
// than a second later: once it returns nothing of the repository runs, and
// a reload (serve's, racing its shutdown) starts nothing.
func TestCloseStopsRetiredVersions(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := repoWith(t, goodSpec, "")
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatal(err)
	}
	retired, err := repo.Version("fraud", 1)
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "fraud", "1", "model.yaml")
	os.WriteFile(spec, []byte(goodSpec+"batching: {max_batch_size: 7}\n"), 0o644)
	repo.Reload()
	if v, err := repo.Version("fraud", 1); err != nil || v == retired {
		t.Fatalf("after model.yaml changed: %v; want version 1 reloaded", versionOf(v, err))
	}
	repo.Close()
	if _, err := retired.Predict(context.Background(), make([]float32, retired.NumFeatures()), 1); !errors.Is(err, batch.ErrClosed) {
		t.Errorf("the retired version after Close: %v, want batch.ErrClosed", err)
	}
	os.WriteFile(spec, []byte(goodSpec+"batching: {max_batch_size: 8}\n"), 0o644)
	repo.Reload()
}

// A model.yaml replaced by another of the same size with the same
// modification time (cp -p, rsync -t and tar keep it; a filesystem of
// whole seconds gives it within the second) reloads: renamed over the old
// one (a new inode), or written in its place (a new change time).
func TestReplacedSameSizeAndTime(t *testing.T) {
	for _, how := range []string{"renamed over", "rewritten in place"} {
		t.Run(how, func(t *testing.T) {
			dir := repoWith(t, goodSpec+"batching: {max_batch_size: 7}\n", "")
			repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			spec := filepath.Join(dir, "fraud", "1", "model.yaml")
			info, err := os.Stat(spec)
			if err != nil {
				t.Fatal(err)
			}
			next := []byte(goodSpec + "batching: {max_batch_size: 8}\n")
			path := spec
			if how == "renamed over" {
				path = filepath.Join(t.TempDir(), "model.yaml")
			} else {
				// Not within the clock tick of the first write, whose change
				// time a kernel before 6.13 would give the second too.
				time.Sleep(time.Until(info.ModTime().Add(20 * time.Millisecond)))
			}
			if err := os.WriteFile(path, next, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, info.ModTime(), info.ModTime()); err != nil {
				t.Fatal(err)
			}
			if path != spec {
				if err := os.Rename(path, spec); err != nil {
					t.Fatal(err)
				}
			}
			repo.Reload()
			v, err := repo.Version("fraud", 1)
			if err != nil {
				t.Fatal(err)
			}
			if n := v.Spec.Batching.MaxBatchSize; n != 8 {
				t.Errorf("after model.yaml was replaced: max_batch_size %d, want 8", n)
			}
		})
	}
}

// TestVersionNames: a version's directory is its number as written; 01
// beside 1 is refused and 1 serves, and 01 alone is no version.
func TestVersionNames(t *testing.T) {
	dir := repoWith(t, goodSpec, "")
	v1, v01 := filepath.Join(dir, "fraud", "1"), filepath.Join(dir, "fraud", "01")
	if err := os.CopyFS(v01, os.DirFS(v1)); err != nil {
		t.Fatal(err)
	}
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err != nil {
		t.Fatalf("versions 01 and 1: %v", err)
	}
	defer repo.Close()
	if v, err := repo.Version("fraud", 0); err != nil || v.Version != 1 {
		t.Errorf("versions 01 and 1: production %v, want version 1", versionOf(v, err))
	}
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	_, err = model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t)})
	if err == nil || !strings.Contains(err.Error(), v01+": a version's directory is its number: name it 1") {
		t.Errorf("version 01 alone: %v, want it refused, named", err)
	}
}

// TestDevices loads an ONNX model on each device setting. With a GPU, gpu
// and auto predict there, in float32 or TF32, what the CPU predicts; without
// one, auto predicts on the CPU and gpu is refused, naming what is missing.
func TestDevices(t *testing.T) {
	gpu := cudatest.Available(t)
	dir := t.TempDir()
	art := onnxtest.Marshal(t, onnxtest.MLP(5, 10, 32, 1))
	settings := []string{"device: cpu", "device: auto", "", "device: gpu", "device: gpu\nprecision: tf32"}
	for i, setting := range settings {
		v := filepath.Join(dir, "mlp", strconv.Itoa(i+1))
		if err := os.MkdirAll(v, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(v, "model.onnx"), art, 0o644)
		os.WriteFile(filepath.Join(v, "model.yaml"), []byte("format: onnx\nartifact: model.onnx\ninputs: {feature_service: fraud_v1}\n"+setting+"\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "mlp", "aliases.yaml"), []byte("production: 1\n"), 0o644)
	var logs bytes.Buffer
	repo, err := model.Open(model.Config{Dir: dir, Definitions: fraudDefs(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	in := onnxtest.Randn(rng, 100*10, 1)
	want, err := repo.Models()["mlp"].Versions[1].Predict(context.Background(), in, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, setting := range settings {
		v := repo.Models()["mlp"].Versions[i+1]
		wantDevice := "cpu"
		switch {
		case i == 0:
		case gpu:
			wantDevice = "gpu"
		case strings.Contains(setting, "gpu"):
			if v != nil {
				t.Errorf("%q: loaded on %s without a GPU", setting, v.Device)
			}
			if w := fmt.Sprintf("%d/model.yaml:4: device: cuda: no GPU available", i+1); !strings.Contains(logs.String(), w) {
				t.Errorf("%q: logs do not say %q:\n%s", setting, w, logs.String())
			}
			continue
		}
		if v == nil || v.Device != wantDevice {
			t.Fatalf("%q: %+v, want a version on %s\n%s", setting, v, wantDevice, logs.String())
		}
		got, err := v.Predict(context.Background(), in, 100)
		if err != nil {
			t.Fatal(err)
		}
		for r := range want {
			if d := math.Abs(float64(got[r] - want[r])); !(d <= 1e-3) {
				t.Errorf("%q: row %d: %v, the CPU %v", setting, r, got[r], want[r])
			}
		}
	}
	if !gpu && !strings.Contains(logs.String(), "model on the CPU") {
		t.Errorf("logs do not say auto runs on the CPU:\n%s", logs.String())
	}
}
