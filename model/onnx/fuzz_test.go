package onnx_test

import (
	"math"
	"testing"

	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/onnx/internal/onnxpb"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

// FuzzLoad checks that the loader never panics, and that a model it accepts
// evaluates a row of zeros and a row of NaNs without panicking, writing
// every element of the output, the same bits each time. Its seeds are small
// graphs of each operator; the fixtures are too large to minimize.
func FuzzLoad(f *testing.F) {
	ones := []*onnxpb.TensorProto{onnxtest.Tensor("s", []int64{3}, []float32{1, 2, 3})}
	concat := withNode("Concat", []string{"r"}, nil, onnxtest.AttrI("axis", 1))
	concat.Graph.Output[0] = onnxtest.Info("y", float, "batch", 6)
	matmul := withNode("MatMul", []string{"w"}, nil)
	matmul.Graph.Output[0] = onnxtest.Info("y", float, "batch", 4)
	for _, m := range []*onnxpb.ModelProto{
		tiny(),
		withNode("Sigmoid", nil, nil),
		withNode("Tanh", nil, nil),
		withNode("LeakyRelu", nil, nil, onnxtest.AttrF("alpha", 0.2)),
		withNode("Softmax", nil, nil, onnxtest.AttrI("axis", 1)),
		withNode("Flatten", nil, nil),
		withNode("Identity", nil, nil),
		concat,
		withNode("Add", []string{"s"}, ones),
		withNode("Sub", []string{"r"}, nil),
		withNode("Mul", []string{"s"}, ones),
		matmul,
		withNode("BatchNormalization", []string{"s", "s", "s", "s"}, ones, onnxtest.AttrF("epsilon", 0.01)),
	} {
		b := onnxtest.Marshal(f, m)
		if _, err := onnx.Parse(b); err != nil {
			f.Fatalf("seed: %v", err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnx.Parse(data)
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
		if nf < 1 || no < 1 {
			t.Fatalf("%d features, %d outputs", nf, no)
		}
		if nf > 1<<16 || no > 1<<16 {
			return // a few bytes can ask for rows of megabytes
		}
		x := make([]float32, 3*nf)
		for i := range nf {
			x[2*nf+i] = float32(math.NaN())
		}
		// Two runs whose outputs start different must agree, bit for bit.
		var outs [2][]float32
		for k := range outs {
			outs[k] = make([]float32, 3*no)
			for i := range outs[k] {
				outs[k][i] = float32(k + 1)
			}
			m.Predict(x, 3, outs[k])
		}
		for i, v := range outs[0] {
			if a, b := math.Float32bits(v), math.Float32bits(outs[1][i]); a != b {
				t.Fatalf("row %d output %d: %v then %v", i/no, i%no, v, outs[1][i])
			}
			if i/no == 1 && math.Float32bits(v) != math.Float32bits(outs[0][i%no]) {
				t.Fatalf("two rows of zeros: output %d is %v then %v", i%no, outs[0][i%no], v)
			}
		}
	})
}
