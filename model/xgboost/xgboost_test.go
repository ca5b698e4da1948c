package xgboost_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/model/modeltest"
	"github.com/quiver-ml/quiver/model/xgboost"
)

// The fixtures: models that testdata/gen.py trained with XGBoost 1.7.4, and
// XGBoost's own predictions for test rows.
var fixtures = []struct {
	name      string
	objective xgboost.Objective
	features  int
	outputs   int
}{
	{"binary", xgboost.BinaryLogistic, 10, 1},
	{"regression", xgboost.RegSquaredError, 8, 1},
	{"reglogistic", xgboost.RegLogistic, 6, 1},
	{"multiclass", xgboost.MultiSoftprob, 7, 3},
	{"basescore", xgboost.BinaryLogistic, 5, 1},
}

// tolerance is the acceptance criterion: agreement with XGBoost within 1e-5,
// absolute, or relative for predictions beyond 1 in magnitude.
const tolerance = 1e-5

func loadFixture(tb testing.TB, name string) (*xgboost.Model, []float32, []float32, int) {
	tb.Helper()
	return modeltest.Load(tb, filepath.Join("testdata", name+".json"), filepath.Join("testdata", name+".expected.json"), xgboost.Parse)
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, x, want, rows := loadFixture(t, fx.name)
			if m.Objective() != fx.objective || m.NumFeatures() != fx.features || m.NumOutputs() != fx.outputs {
				t.Fatalf("objective %s, %d features, %d outputs; want %s, %d, %d",
					m.Objective(), m.NumFeatures(), m.NumOutputs(), fx.objective, fx.features, fx.outputs)
			}
			maxErr := modeltest.Agree(t, m, x, want, rows, tolerance)
			t.Logf("%d rows, %d trees: max error %.3g", rows, m.NumTrees(), maxErr)
		})
	}
}

// TestPredictParallel checks that a batch large enough to be split across
// goroutines gives the bits that rows scored one at a time give.
func TestPredictParallel(t *testing.T) {
	m, x, _, rows := loadFixture(t, "multiclass")
	const n = 5000
	nf, no := m.NumFeatures(), m.NumOutputs()
	big := make([]float32, 0, n*nf)
	for len(big) < n*nf {
		big = append(big, x...)
	}
	big = big[:n*nf]
	got := make([]float32, n*no)
	m.Predict(big, n, got)
	one := make([]float32, no)
	for r := range n {
		m.Predict(big[r*nf:], 1, one)
		for k := range one {
			if math.Float32bits(one[k]) != math.Float32bits(got[r*no+k]) {
				t.Fatalf("row %d (fixture row %d) output %d: %v alone, %v in the batch", r, r%rows, k, one[k], got[r*no+k])
			}
		}
	}
}

func TestPredictAllocs(t *testing.T) {
	m, x, want, _ := loadFixture(t, "binary")
	out := make([]float32, len(want))
	if n := testing.AllocsPerRun(100, func() { m.Predict(x, 64, out) }); n != 0 {
		t.Errorf("Predict of 64 rows: %v allocations", n)
	}
}

func TestPredictShort(t *testing.T) {
	m, _, _, _ := loadFixture(t, "multiclass")
	defer func() {
		if recover() == nil {
			t.Error("no panic for a short output")
		}
	}()
	m.Predict(make([]float32, 2*m.NumFeatures()), 2, make([]float32, 2*m.NumOutputs()-1))
}

// edit loads a fixture as generic JSON, lets f change it, and parses the result.
func edit(t *testing.T, name string, f func(learner map[string]any)) (*xgboost.Model, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	f(doc["learner"].(map[string]any))
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	m, err := xgboost.Parse(b)
	if err == nil && m == nil {
		t.Fatal("Parse returned neither a model nor an error")
	}
	if err != nil && m != nil {
		t.Fatalf("Parse returned a model along with the error %v", err)
	}
	return m, err
}

func tree0(l map[string]any) map[string]any {
	gb := l["gradient_booster"].(map[string]any)
	return gb["model"].(map[string]any)["trees"].([]any)[0].(map[string]any)
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		name    string
		fixture string
		edit    func(l map[string]any)
		is      error
		mention string
	}{
		{"objective", "binary", func(l map[string]any) {
			l["objective"].(map[string]any)["name"] = "rank:pairwise"
		}, xgboost.ErrUnsupported, `objective "rank:pairwise"`},
		{"softmax objective", "multiclass", func(l map[string]any) {
			l["objective"].(map[string]any)["name"] = "multi:softmax"
		}, xgboost.ErrUnsupported, `objective "multi:softmax"`},
		{"gblinear", "binary", func(l map[string]any) {
			l["gradient_booster"] = map[string]any{"name": "gblinear", "model": map[string]any{"weights": []any{0.5}}}
		}, xgboost.ErrUnsupported, `booster "gblinear"`},
		{"dart", "binary", func(l map[string]any) {
			l["gradient_booster"] = map[string]any{"name": "dart", "gbtree": l["gradient_booster"], "weight_drop": []any{}}
		}, xgboost.ErrUnsupported, `booster "dart"`},
		{"categorical split", "binary", func(l map[string]any) {
			tree0(l)["split_type"].([]any)[0] = 1
		}, xgboost.ErrUnsupported, "tree 0: xgboost: unsupported: node 0: categorical split"},
		{"multi-target", "regression", func(l map[string]any) {
			l["learner_model_param"].(map[string]any)["num_target"] = "2"
		}, xgboost.ErrUnsupported, "multi-target"},
		{"no learner param", "binary", func(l map[string]any) {
			delete(l, "learner_model_param")
		}, xgboost.ErrMalformed, "learner_model_param"},
		{"bad base_score", "binary", func(l map[string]any) {
			l["learner_model_param"].(map[string]any)["base_score"] = "1.5"
		}, xgboost.ErrMalformed, "base_score 1.5"},
		{"base_score of another length", "multiclass", func(l map[string]any) {
			l["learner_model_param"].(map[string]any)["base_score"] = "[1E-1,2E-1]"
		}, xgboost.ErrMalformed, "has 2 values for 3 outputs"},
		{"base_score unclosed", "multiclass", func(l map[string]any) {
			l["learner_model_param"].(map[string]any)["base_score"] = "[1E-1,2E-1,3E-1"
		}, xgboost.ErrMalformed, "not a float32 or a vector"},
		{"base_score empty vector", "binary", func(l map[string]any) {
			l["learner_model_param"].(map[string]any)["base_score"] = "[]"
		}, xgboost.ErrMalformed, "base_score"},
		{"feature out of range", "binary", func(l map[string]any) {
			tree0(l)["split_indices"].([]any)[0] = 10
		}, xgboost.ErrMalformed, "split on feature 10 of 10"},
		{"cycle", "binary", func(l map[string]any) {
			tree0(l)["left_children"].([]any)[1] = 0
		}, xgboost.ErrMalformed, "child 0 out of range"},
		{"shared child", "binary", func(l map[string]any) {
			t := tree0(l)
			t["left_children"].([]any)[2] = t["left_children"].([]any)[1]
		}, xgboost.ErrMalformed, "has another parent"},
		{"short array", "binary", func(l map[string]any) {
			t := tree0(l)
			t["default_left"] = t["default_left"].([]any)[1:]
		}, xgboost.ErrMalformed, "default_left"},
		{"tree_info", "multiclass", func(l map[string]any) {
			l["gradient_booster"].(map[string]any)["model"].(map[string]any)["tree_info"].([]any)[5] = 3
		}, xgboost.ErrMalformed, "tree 5: tree_info 3"},
		{"huge leaves", "regression", func(l map[string]any) {
			t := tree0(l)
			for i, c := range t["left_children"].([]any) {
				if c.(float64) == -1 {
					t["split_conditions"].([]any)[i] = 3e38
				}
			}
		}, xgboost.ErrMalformed, "beyond float32"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := edit(t, c.fixture, c.edit)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %v; want %v mentioning %q", err, c.is, c.mention)
			}
		})
	}

	for _, src := range []string{``, `{`, `[]`, `{"learner": 1}`, `{"learner": {}}`, `null`, `{"version": [1, 7, 4]}`} {
		m, err := xgboost.Parse([]byte(src))
		if m != nil || !errors.Is(err, xgboost.ErrMalformed) {
			t.Errorf("Parse(%q): %v, %v; want ErrMalformed", src, m, err)
		}
	}
}

// TestClassBaseScores: a multi-class model as XGBoost 3.1 and later write
// it, with a base score per class, starts each class's margin at its own.
// The fixture's probabilities p (base score 0.5 for every class, which
// softmax cancels) become p_k·exp(b_k), normalised.
func TestClassBaseScores(t *testing.T) {
	_, x, p, rows := loadFixture(t, "multiclass")
	b := []float64{-3.95e-2, 1.97e-1, -1.57e-1}
	m, err := edit(t, "multiclass", func(l map[string]any) {
		l["learner_model_param"].(map[string]any)["base_score"] = "[-3.95E-2,1.97E-1,-1.57E-1]"
	})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(p))
	for r := range rows {
		var sum float64
		for k, bk := range b {
			sum += float64(p[r*3+k]) * math.Exp(bk)
		}
		for k, bk := range b {
			want[r*3+k] = float32(float64(p[r*3+k]) * math.Exp(bk) / sum)
		}
	}
	modeltest.Agree(t, m, x, want, rows, tolerance)

	// One value for every class, as XGBoost 3.0 writes it, changes nothing.
	one, err := edit(t, "multiclass", func(l map[string]any) {
		l["learner_model_param"].(map[string]any)["base_score"] = "[5E-1]"
	})
	if err != nil {
		t.Fatal(err)
	}
	modeltest.Agree(t, one, x, p, rows, tolerance)
}

// TestUnmodified checks that edit itself keeps a model loadable.
func TestUnmodified(t *testing.T) {
	for _, fx := range fixtures {
		if _, err := edit(t, fx.name, func(map[string]any) {}); err != nil {
			t.Errorf("%s: %v", fx.name, err)
		}
	}
}

// TestNoFeatures checks a model without features, whose trees are single
// leaves: its prediction is the sigmoid of base margin and leaves.
func TestNoFeatures(t *testing.T) {
	src := `{"learner":{"gradient_booster":{"name":"gbtree","model":{"tree_info":[0,0],"trees":[
{"default_left":[0],"left_children":[-1],"right_children":[-1],"split_conditions":[2.5E-1],"split_indices":[0]},
{"default_left":[false],"left_children":[-1],"right_children":[-1],"split_conditions":[5E-1],"split_indices":[0]}]}},
"learner_model_param":{"base_score":"5E-1","num_feature":"0"},"objective":{"name":"reg:logistic"}}}`
	m, err := xgboost.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 3)
	m.Predict(nil, 3, out)
	want := float32(1 / (1 + math.Exp(-0.75)))
	for i, v := range out {
		if v != want {
			t.Errorf("row %d: %v, want %v", i, v, want)
		}
	}
}
