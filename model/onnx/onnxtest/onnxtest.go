// Package onnxtest builds ONNX models in Go for tests and benchmarks: the
// refusal tests' small graphs, the fuzzer's seeds, and the benchmarks' MLPs,
// whose weights are too large to commit.
package onnxtest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/quiver-ml/quiver/model/onnx/internal/onnxpb"
)

// Node is a node of op from inputs in to outputs out, named by its first output.
func Node(op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out[0]), Input: in, Output: out, Attribute: attrs}
}

// AttrF is a FLOAT attribute.
func AttrF(name string, f float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(f)}
}

// AttrI is an INT attribute.
func AttrI(name string, i int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(i)}
}

// Tensor is a FLOAT initializer with its data in float_data.
func Tensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, FloatData: data}
}

// RawTensor is a FLOAT initializer with its data in raw_data.
func RawTensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, RawData: raw}
}

// Info is a tensor's ValueInfo; each dimension is an int (fixed) or a string
// (symbolic).
func Info(name string, elem onnxpb.TensorProto_DataType, dims ...any) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch d := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}
		case string:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(elem)), Shape: shape}},
	}}
}

// NewModel wraps a graph in a model of opset 13.
func NewModel(nodes []*onnxpb.NodeProto, inits []*onnxpb.TensorProto, inputs, outputs []*onnxpb.ValueInfoProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("test"), Node: nodes, Initializer: inits, Input: inputs, Output: outputs,
		},
	}
}

// Marshal returns m in the protobuf encoding of an .onnx file.
func Marshal(tb testing.TB, m *onnxpb.ModelProto) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Randn returns n normal random numbers of standard deviation scale.
func Randn(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// MLP is a multilayer perceptron of Gemm layers as PyTorch exports
// nn.Linear (transB=1, weights [out, in], raw_data), ReLU between them and
// a sigmoid at the end, with random weights; widths are the widths of its
// input and of each layer's output.
func MLP(seed uint64, widths ...int) *onnxpb.ModelProto {
	rng := rand.New(rand.NewPCG(seed, 1))
	var nodes []*onnxpb.NodeProto
	var inits []*onnxpb.TensorProto
	prev := "x"
	for l := 1; l < len(widths); l++ {
		in, out := widths[l-1], widths[l]
		w, b := "w"+string(rune('0'+l)), "b"+string(rune('0'+l))
		h := "h" + string(rune('0'+l))
		inits = append(inits,
			RawTensor(w, []int64{int64(out), int64(in)}, Randn(rng, in*out, 1/math.Sqrt(float64(in)))),
			RawTensor(b, []int64{int64(out)}, Randn(rng, out, 0.1)))
		nodes = append(nodes, Node("Gemm", []string{prev, w, b}, []string{h}, AttrI("transB", 1)))
		act, a := "Relu", "a"+string(rune('0'+l))
		if l == len(widths)-1 {
			act, a = "Sigmoid", "y"
		}
		nodes = append(nodes, Node(act, []string{h}, []string{a}))
		prev = a
	}
	return NewModel(nodes, inits,
		[]*onnxpb.ValueInfoProto{Info("x", onnxpb.TensorProto_FLOAT, "batch", widths[0])},
		[]*onnxpb.ValueInfoProto{Info("y", onnxpb.TensorProto_FLOAT, "batch", widths[len(widths)-1])})
}
