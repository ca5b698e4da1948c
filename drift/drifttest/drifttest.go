// Package drifttest helps test drift detection: a model repository watched
// against the fraud demo's profile, and predictions drawn from that profile,
// with features shifted at will.
package drifttest

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Repository writes a model repository with version 1 of model fraud: the
// fraud demo's feature service and profile, with an output distribution
// added, watched as driftYAML (model.yaml's drift section, indented) says.
// It returns the repository, the demo's definitions and the profile.
func Repository(t testing.TB, driftYAML string) (string, *features.Definitions, *drift.Profile) {
	t.Helper()
	defs, err := features.Load(filepath.Join(Root(), "examples/fraud/definitions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := drift.LoadProfile(filepath.Join(Root(), "examples/fraud/models/fraud/1/profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	prof.Output = &drift.FeatureProfile{Name: "probability", Type: "float", Count: 1000,
		Edges: []float64{0.01, 0.05, 0.2}, Counts: []int{700, 200, 80, 20}}
	dir := t.TempDir()
	vdir := filepath.Join(dir, "fraud", "1")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := drift.WriteProfile(filepath.Join(vdir, "profile.json"), *prof); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(Root(), "examples/fraud/models/fraud/1/model.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec := "format: xgboost-json\nartifact: model.json\ninputs: {feature_service: fraud_v1}\nprofile: profile.json\ndrift:\n" + driftYAML
	for name, b := range map[string][]byte{"model.json": model, "model.yaml": []byte(spec)} {
		if err := os.WriteFile(filepath.Join(vdir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, defs, prof
}

// Sampler draws predictions of fraud version 1 from a profile: a bin by its
// reference share, then a value inside it; a shifted feature's values all
// go far past its last edge.
type Sampler struct {
	r       *rand.Rand
	columns []drift.FeatureProfile // inputs, then the output
	shifted []bool
}

// NewSampler samples prof, which must have an output.
func NewSampler(prof *drift.Profile, seed uint64) *Sampler {
	cols := append(slices.Clone(prof.Features), *prof.Output)
	return &Sampler{r: rand.New(rand.NewPCG(seed, seed)), columns: cols, shifted: make([]bool, len(cols))}
}

// Shift shifts a feature, by its profile name, or stops shifting it.
func (s *Sampler) Shift(feature string, on bool) {
	i := slices.IndexFunc(s.columns, func(f drift.FeatureProfile) bool { return f.Name == feature })
	s.shifted[i] = on
}

func (s *Sampler) value(i int) float32 {
	fp := s.columns[i]
	if s.shifted[i] {
		return float32(fp.Edges[len(fp.Edges)-1] * 3)
	}
	u := s.r.IntN(fp.Count + fp.Nulls)
	if u >= fp.Count {
		return float32(math.NaN())
	}
	b := 0
	for u >= fp.Counts[b] {
		u -= fp.Counts[b]
		b++
	}
	if b == 0 {
		return float32(fp.Edges[0] - 1)
	}
	return float32(fp.Edges[b-1]) // an edge opens its bin
}

// Predictions draws n predictions, the first at *at, each step after the
// previous; *at moves past the last.
func (s *Sampler) Predictions(n int, at *time.Time, step time.Duration) []drift.Prediction {
	ps := make([]drift.Prediction, n)
	for i := range ps {
		in := make([]float32, len(s.columns)-1)
		for c := range in {
			in[c] = s.value(c)
		}
		ps[i] = drift.Prediction{RequestID: ksuid.New().String(), Model: "fraud", Version: 1,
			Inputs: drift.Numbers(in), Output: []drift.Number{drift.Number(s.value(len(in)))}, Time: *at}
		*at = at.Add(step)
	}
	return ps
}

// Produce logs predictions to topic, keyed by model as serve does, and
// returns the last record, produced.
func Produce(t testing.TB, cl *kgo.Client, topic string, ps []drift.Prediction) *kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(ps))
	for i, p := range ps {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(p.Model), Value: b, Timestamp: p.Time} // as serve, producing as it predicts
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return recs[len(recs)-1]
}
