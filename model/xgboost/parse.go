package xgboost

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The parts of XGBoost's JSON model that prediction needs; the rest (training
// statistics, parameters, attributes) is ignored.
type jsonModel struct {
	Learner *struct {
		GradientBooster *struct {
			Name  string `json:"name"`
			Model *struct {
				Param *struct {
					NumTrees        string `json:"num_trees"`
					NumParallelTree string `json:"num_parallel_tree"`
					SizeLeafVector  string `json:"size_leaf_vector"`
				} `json:"gbtree_model_param"`
				TreeInfo []int64    `json:"tree_info"`
				Trees    []jsonTree `json:"trees"`
			} `json:"model"`
		} `json:"gradient_booster"`
		Param *struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective *struct {
			Name string `json:"name"`
		} `json:"objective"`
	} `json:"learner"`
}

type jsonTree struct {
	Param *struct {
		NumNodes       string `json:"num_nodes"`
		SizeLeafVector string `json:"size_leaf_vector"`
	} `json:"tree_param"`
	LeftChildren    []int64       `json:"left_children"`
	RightChildren   []int64       `json:"right_children"`
	SplitIndices    []int64       `json:"split_indices"`
	SplitConditions []json.Number `json:"split_conditions"`
	DefaultLeft     []jsonBool    `json:"default_left"`
	SplitType       []int64       `json:"split_type"`
}

// jsonBool is default_left's element: 0 or 1 since XGBoost 1.6, true or
// false before.
type jsonBool bool

func (b *jsonBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "0", "false":
		*b = false
	case "1", "true":
		*b = true
	default:
		return fmt.Errorf("default_left element %s is not 0, 1, true or false", data)
	}
	return nil
}

const (
	maxOutputs  = 1 << 20 // num_class beyond this is not a real model
	maxFeatures = featMask
	maxNodes    = math.MaxInt32
)

// Parse reads an xgboost-json model: the JSON that XGBoost's
// Booster.save_model writes to a file named *.json. It refuses what this
// package cannot evaluate exactly with ErrUnsupported, and an inconsistent
// model with ErrMalformed.
func Parse(data []byte) (*Model, error) {
	var jm jsonModel
	if err := json.Unmarshal(data, &jm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	l := jm.Learner
	if l == nil {
		return nil, fmt.Errorf("%w: no learner", ErrMalformed)
	}
	if l.GradientBooster == nil {
		return nil, fmt.Errorf("%w: no learner.gradient_booster", ErrMalformed)
	}
	gb := l.GradientBooster
	if gb.Name != "gbtree" {
		return nil, fmt.Errorf("%w: booster %q (only gbtree is supported)", ErrUnsupported, gb.Name)
	}
	if l.Objective == nil {
		return nil, fmt.Errorf("%w: no learner.objective", ErrMalformed)
	}
	m := &Model{objective: Objective(l.Objective.Name)}
	switch m.objective {
	case BinaryLogistic, RegLogistic, RegSquaredError, MultiSoftprob:
	default:
		return nil, fmt.Errorf("%w: objective %q (supported: %s, %s, %s, %s)", ErrUnsupported,
			l.Objective.Name, BinaryLogistic, RegLogistic, RegSquaredError, MultiSoftprob)
	}

	p := l.Param
	if p == nil {
		return nil, fmt.Errorf("%w: no learner.learner_model_param", ErrMalformed)
	}
	nf, err := paramInt("learner_model_param.num_feature", p.NumFeature, maxFeatures, true)
	if err != nil {
		return nil, err
	}
	m.numFeatures = nf
	numClass, err := paramInt("learner_model_param.num_class", p.NumClass, maxOutputs, false)
	if err != nil {
		return nil, err
	}
	numTarget, err := paramInt("learner_model_param.num_target", p.NumTarget, maxOutputs, false)
	if err != nil {
		return nil, err
	}
	if numTarget > 1 {
		return nil, fmt.Errorf("%w: multi-target model (num_target %d)", ErrUnsupported, numTarget)
	}
	m.numOutputs = 1
	if m.objective == MultiSoftprob {
		if numClass < 1 {
			return nil, fmt.Errorf("%w: %s with num_class %d", ErrMalformed, m.objective, numClass)
		}
		m.numOutputs = numClass
	} else if numClass > 1 {
		return nil, fmt.Errorf("%w: %s with num_class %d", ErrMalformed, m.objective, numClass)
	}
	base, err := baseScore(p.BaseScore)
	if err != nil {
		return nil, err
	}
	switch {
	case len(base) == m.numOutputs:
	case len(base) == 1:
		base = slices.Repeat(base, m.numOutputs)
	default:
		return nil, fmt.Errorf("%w: base_score %q has %d values for %d outputs", ErrMalformed, p.BaseScore, len(base), m.numOutputs)
	}
	if m.objective == BinaryLogistic || m.objective == RegLogistic {
		b := base[0]
		if !(b > 0 && b < 1) {
			return nil, fmt.Errorf("%w: base_score %v of %s is not in (0, 1)", ErrMalformed, b, m.objective)
		}
		// XGBoost's ProbToMargin, in float32: -logf(1/base_score - 1).
		t := float32(float32(1)/b) - 1
		base[0] = float32(-math.Log(float64(t)))
	}
	m.baseMargin = base

	gm := gb.Model
	if gm == nil {
		return nil, fmt.Errorf("%w: no learner.gradient_booster.model", ErrMalformed)
	}
	if gm.Param != nil {
		if s := gm.Param.SizeLeafVector; s != "" && s != "0" {
			return nil, fmt.Errorf("%w: vector leaves (size_leaf_vector %s)", ErrUnsupported, s)
		}
		if s := gm.Param.NumTrees; s != "" && s != strconv.Itoa(len(gm.Trees)) {
			return nil, fmt.Errorf("%w: num_trees %s but %d trees", ErrMalformed, s, len(gm.Trees))
		}
	}
	if len(gm.TreeInfo) != len(gm.Trees) {
		return nil, fmt.Errorf("%w: %d trees but %d tree_info entries", ErrMalformed, len(gm.Trees), len(gm.TreeInfo))
	}
	m.roots = make([]int32, len(gm.Trees))
	m.group = make([]int32, len(gm.Trees))
	// bound is, per output, the largest margin in magnitude that the trees can
	// add up to: kept well inside float32 so that every prediction is finite.
	bound := make([]float64, m.numOutputs)
	for i := range gm.Trees {
		g := gm.TreeInfo[i]
		if g < 0 || g >= int64(m.numOutputs) {
			return nil, fmt.Errorf("%w: tree %d: tree_info %d is not an output (%d outputs)", ErrMalformed, i, g, m.numOutputs)
		}
		m.group[i] = int32(g)
		m.roots[i] = int32(len(m.nodes))
		maxLeaf, err := m.addTree(&gm.Trees[i])
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
		bound[g] += maxLeaf
	}
	for g, b := range bound {
		if b+math.Abs(float64(m.baseMargin[g])) > math.MaxFloat32/4 {
			return nil, fmt.Errorf("%w: leaf values of output %d add up beyond float32", ErrMalformed, g)
		}
	}
	return m, nil
}

// addTree checks a tree and appends its nodes to m.nodes in breadth-first
// order, each node's children adjacent. It returns the largest magnitude of
// its leaf values.
func (m *Model) addTree(t *jsonTree) (float64, error) {
	n := len(t.LeftChildren)
	if n == 0 {
		return 0, fmt.Errorf("%w: no nodes", ErrMalformed)
	}
	if t.Param != nil {
		if s := t.Param.SizeLeafVector; s != "" && s != "0" {
			return 0, fmt.Errorf("%w: vector leaves (size_leaf_vector %s)", ErrUnsupported, s)
		}
		if s := t.Param.NumNodes; s != "" && s != strconv.Itoa(n) {
			return 0, fmt.Errorf("%w: num_nodes %s but %d nodes", ErrMalformed, s, n)
		}
	}
	for _, a := range []struct {
		name string
		n    int
	}{
		{"right_children", len(t.RightChildren)},
		{"split_indices", len(t.SplitIndices)},
		{"split_conditions", len(t.SplitConditions)},
		{"default_left", len(t.DefaultLeft)},
	} {
		if a.n != n {
			return 0, fmt.Errorf("%w: %d left_children but %d %s", ErrMalformed, n, a.n, a.name)
		}
	}
	if len(t.SplitType) != 0 && len(t.SplitType) != n {
		return 0, fmt.Errorf("%w: %d left_children but %d split_type", ErrMalformed, n, len(t.SplitType))
	}
	if len(m.nodes)+n > maxNodes {
		return 0, fmt.Errorf("%w: more than %d nodes", ErrMalformed, maxNodes)
	}

	// Breadth-first from the root: queue holds the JSON ids of the nodes
	// already placed, in placement order, so queue[k] lands at base+k.
	base := len(m.nodes)
	seen := make([]bool, n)
	queue := make([]int64, 1, n)
	seen[0] = true
	maxLeaf := 0.0
	for k := 0; k < len(queue); k++ {
		id := queue[k]
		cond, err := strconv.ParseFloat(string(t.SplitConditions[id]), 32)
		if err != nil || math.IsNaN(cond) || math.IsInf(cond, 0) {
			return 0, fmt.Errorf("%w: node %d: split_condition %s is not a finite float32", ErrMalformed, id, t.SplitConditions[id])
		}
		left := t.LeftChildren[id]
		if left == -1 { // a leaf, as XGBoost tells them
			m.nodes = append(m.nodes, node{cond: float32(cond), feat: leaf, left: uint32(base + k)})
			maxLeaf = max(maxLeaf, math.Abs(cond))
			continue
		}
		if len(t.SplitType) != 0 && t.SplitType[id] != 0 {
			if t.SplitType[id] == 1 {
				return 0, fmt.Errorf("%w: node %d: categorical split", ErrUnsupported, id)
			}
			return 0, fmt.Errorf("%w: node %d: split_type %d", ErrMalformed, id, t.SplitType[id])
		}
		feat := t.SplitIndices[id]
		if feat < 0 || feat >= int64(m.numFeatures) {
			return 0, fmt.Errorf("%w: node %d: split on feature %d of %d", ErrMalformed, id, feat, m.numFeatures)
		}
		right := t.RightChildren[id]
		for _, c := range []int64{left, right} {
			if c <= 0 || c >= int64(n) {
				return 0, fmt.Errorf("%w: node %d: child %d out of range", ErrMalformed, id, c)
			}
			if seen[c] {
				return 0, fmt.Errorf("%w: node %d: child %d has another parent", ErrMalformed, id, c)
			}
			seen[c] = true
		}
		nd := node{cond: float32(cond), feat: uint32(feat), left: uint32(base + len(queue))}
		if t.DefaultLeft[id] {
			nd.feat |= defaultLeft
		}
		m.nodes = append(m.nodes, nd)
		queue = append(queue, left, right)
	}
	return maxLeaf, nil
}

// paramInt parses one of XGBoost's integer parameters, which it writes as
// strings. An absent one is 0 unless it is required.
func paramInt(name, s string, limit int, required bool) (int, error) {
	if s == "" && !required {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > limit {
		return 0, fmt.Errorf("%w: %s %q is not an integer in [0, %d]", ErrMalformed, name, s, limit)
	}
	return v, nil
}

// baseScore parses learner_model_param.base_score: a float32 written like
// "5E-1", or a vector "[5E-1]" as XGBoost 3 writes it, since 3.1 with a
// value per class for a multi-class model (a margin, as softmax's base
// score always was).
func baseScore(s string) ([]float32, error) {
	v, vector := strings.CutPrefix(s, "[")
	if vector {
		if v, vector = strings.CutSuffix(v, "]"); !vector {
			return nil, fmt.Errorf("%w: base_score %q is not a float32 or a vector of them", ErrMalformed, s)
		}
	}
	var base []float32
	for f := range strings.SplitSeq(v, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || len(base) == maxOutputs {
			return nil, fmt.Errorf("%w: base_score %q is not a finite float32 or a vector of at most %d of them", ErrMalformed, s, maxOutputs)
		}
		base = append(base, float32(x))
	}
	return base, nil
}
