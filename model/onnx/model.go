package onnx

import (
	"errors"
	"sync"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnsupported is returned for a model that is valid ONNX but uses
	// something this package does not evaluate: an operator, an attribute
	// value, a data type, several inputs or outputs, a shape that mixes the
	// rows of a batch. The error names it.
	ErrUnsupported = errors.New("onnx: unsupported")
	// ErrMalformed is returned for input that is not a consistent ONNX model:
	// bytes that are not a ModelProto, values used but never defined, a
	// cycle, tensors whose data does not match their shape, operands whose
	// shapes do not fit together.
	ErrMalformed = errors.New("onnx: malformed model")
)

// A Model is a loaded ONNX graph, ready to predict. It is immutable and safe
// for concurrent use.
type Model struct {
	inputName   string
	outputName  string
	numFeatures int // elements of an input row
	numOutputs  int // elements of an output row

	steps    []step
	slots    []slot   // the values steps read and write; slot 0 is the input
	bufs     []buffer // the columns of the scratch memory of a chunk
	rowWidth int      // scratch elements per row: the sum of the buffers' widths
	maxChunk int      // rows a goroutine evaluates at a time, at most
	rowCost  int      // multiply-adds per row, roughly: decides parallelism

	scratch sync.Pool // *scratch
}

// A slot is where one value lives while a chunk of rows is evaluated: the
// model's input, its output, or a part of a scratch buffer.
type slot struct {
	width int // elements per row
	buf   int // the scratch buffer, or bufInput, bufOutput or bufNone
}

const (
	bufInput  = -1
	bufOutput = -2
	bufNone   = -3 // a value no step writes
)

// NumFeatures is the number of elements of an input row: the width of the
// input matrix of Predict, the product of the input's dimensions after the
// batch dimension.
func (m *Model) NumFeatures() int { return m.numFeatures }

// NumOutputs is the number of elements of an output row: the product of the
// output's dimensions after the batch dimension.
func (m *Model) NumOutputs() int { return m.numOutputs }

// InputName is the name of the graph's input.
func (m *Model) InputName() string { return m.inputName }

// OutputName is the name of the graph's output.
func (m *Model) OutputName() string { return m.outputName }
