package xgboost_test

import (
	"math"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/model/xgboost"
)

// A small model for the fuzzer to start from: two trees, one of them a lone
// leaf.
const tinyModel = `{"learner":{"gradient_booster":{"name":"gbtree","model":{
"gbtree_model_param":{"num_trees":"2","size_leaf_vector":"0"},"tree_info":[0,0],"trees":[
{"default_left":[1,0,0,0,0],"left_children":[1,3,-1,-1,-1],"right_children":[2,4,-1,-1,-1],
"split_conditions":[5E-1,-1E0,3E-1,-2E-1,1E-1],"split_indices":[0,1,0,0,0],"split_type":[0,0,0,0,0],
"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"5","size_leaf_vector":"0"}},
{"default_left":[0],"left_children":[-1],"right_children":[-1],"split_conditions":[2.5E-2],
"split_indices":[0],"split_type":[0],"tree_param":{"num_nodes":"1"}}]}},
"learner_model_param":{"base_score":"5E-1","num_class":"0","num_feature":"2","num_target":"1"},
"objective":{"name":"binary:logistic"}},"version":[1,7,4]}`

// FuzzLoad checks that the loader never panics, and that a model it accepts
// predicts finite numbers for a row of NaNs and a row of zeros. Its seeds are
// a tiny model under each objective; the fixtures are too large to minimize.
func FuzzLoad(f *testing.F) {
	var seeds []string
	for _, obj := range []string{"binary:logistic", "reg:logistic", "reg:squarederror"} {
		seeds = append(seeds, strings.Replace(tinyModel, "binary:logistic", obj, 1))
	}
	multi := strings.Replace(tinyModel, "binary:logistic", "multi:softprob", 1)
	multi = strings.Replace(multi, `"tree_info":[0,0]`, `"tree_info":[0,1]`, 1)
	seeds = append(seeds, strings.Replace(multi, `"num_class":"0"`, `"num_class":"2"`, 1))
	for _, s := range seeds {
		if _, err := xgboost.Parse([]byte(s)); err != nil {
			f.Fatalf("seed: %v", err)
		}
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := xgboost.Parse(data)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned a model along with the error %v", err)
			}
			return
		}
		if m == nil {
			t.Fatal("Parse returned neither a model nor an error")
		}
		nf, no := m.NumFeatures(), m.NumOutputs()
		if nf < 0 || no < 1 {
			t.Fatalf("%d features, %d outputs", nf, no)
		}
		if nf > 1<<16 || no > 1<<16 {
			return // a few bytes can ask for rows of gigabytes
		}
		x := make([]float32, 2*nf)
		for i := range nf {
			x[i] = float32(math.NaN())
		}
		out := make([]float32, 2*no)
		m.Predict(x, 2, out)
		for i, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("row %d output %d is %v", i/no, i%no, v)
			}
			if m.Objective() != xgboost.RegSquaredError && !(v >= 0 && v <= 1) {
				t.Fatalf("row %d output %d: probability %v", i/no, i%no, v)
			}
		}
	})
}
