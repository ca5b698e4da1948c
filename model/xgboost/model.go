package xgboost

import (
	"errors"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnsupported is returned for a model that is valid XGBoost but uses
	// something this package does not evaluate: a booster, an objective, a
	// categorical split, a vector leaf. The error names it.
	ErrUnsupported = errors.New("xgboost: unsupported")
	// ErrMalformed is returned for input that is not a consistent
	// xgboost-json model: bad JSON, missing or mistyped fields, trees whose
	// children or features are out of range, values that are not finite.
	ErrMalformed = errors.New("xgboost: malformed model")
)

// Objective is a supported XGBoost objective, named as XGBoost names it.
type Objective string

// The supported objectives.
const (
	BinaryLogistic  Objective = "binary:logistic"
	RegLogistic     Objective = "reg:logistic"
	RegSquaredError Objective = "reg:squarederror"
	MultiSoftprob   Objective = "multi:softprob"
)

// A Model is a loaded gbtree model, ready to predict. It is immutable and
// safe for concurrent use.
type Model struct {
	objective   Objective
	numFeatures int
	numOutputs  int
	baseMargin  []float32 // the margin each output starts at

	nodes []node  // every tree's nodes; children after their parent
	roots []int32 // index in nodes of each tree's root
	group []int32 // the output each tree adds to (tree_info)
}

// A node is an internal node or a leaf of a flattened tree.
type node struct {
	cond float32 // split condition; the value at a leaf
	feat uint32  // feature index, with defaultLeft and leaf as flags
	left uint32  // index of the left child, the right one is left+1; a leaf's own
}

const (
	defaultLeft = 1 << 31 // a missing value goes left
	leaf        = 1 << 30 // the node is a leaf: feature 0, and it stays put
	featMask    = leaf - 1
)

// NumFeatures is the number of features of a row: the width of the input
// matrix of Predict.
func (m *Model) NumFeatures() int { return m.numFeatures }

// NumOutputs is the number of outputs per row: num_class for multi:softprob,
// 1 otherwise.
func (m *Model) NumOutputs() int { return m.numOutputs }

// NumTrees is the number of trees.
func (m *Model) NumTrees() int { return len(m.roots) }

// Objective is the model's objective, which decides the transform Predict
// applies.
func (m *Model) Objective() Objective { return m.objective }
