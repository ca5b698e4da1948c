package onnx_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/quiver-ml/quiver/model/onnx"
	"github.com/quiver-ml/quiver/model/onnx/internal/onnxpb"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
)

var float = onnxpb.TensorProto_FLOAT

// tiny is x [batch, 4] → Gemm (transB) → Relu → y [batch, 3].
func tiny() *onnxpb.ModelProto {
	return onnxtest.NewModel(
		[]*onnxpb.NodeProto{
			onnxtest.Node("Gemm", []string{"x", "w", "b"}, []string{"h"}, onnxtest.AttrI("transB", 1)),
			onnxtest.Node("Relu", []string{"h"}, []string{"y"}),
		},
		[]*onnxpb.TensorProto{
			onnxtest.Tensor("w", []int64{3, 4}, []float32{1, 2, 3, 4, -1, -2, -3, -4, 0.5, 0, -0.5, 1}),
			onnxtest.Tensor("b", []int64{3}, []float32{0.1, 0.2, -0.3}),
		},
		[]*onnxpb.ValueInfoProto{onnxtest.Info("x", float, "batch", 4)},
		[]*onnxpb.ValueInfoProto{onnxtest.Info("y", float, "batch", 3)})
}

// withNode is tiny with one more node, between its Relu and output: y is
// op(r, extra inputs...).
func withNode(op string, extra []string, inits []*onnxpb.TensorProto, attrs ...*onnxpb.AttributeProto) *onnxpb.ModelProto {
	m := tiny()
	g := m.Graph
	g.Node[1].Output = []string{"r"}
	g.Node = append(g.Node, onnxtest.Node(op, append([]string{"r"}, extra...), []string{"y"}, attrs...))
	g.Initializer = append(g.Initializer, inits...)
	return m
}

func TestTiny(t *testing.T) {
	m, err := onnx.Parse(onnxtest.Marshal(t, tiny()))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 3)
	m.Predict([]float32{1, 1, 1, 1}, 1, out)
	if want := []float32{10.1, 0, 0.7}; !near(out, want) {
		t.Errorf("got %v, want %v", out, want)
	}
}

func near(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6*max(1, math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

// TestRefusals checks that what the package does not evaluate, or what is not
// a consistent model, is refused at load with the right error, naming it.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		model  func() *onnxpb.ModelProto
		target error
		text   string
	}{
		{"Conv", func() *onnxpb.ModelProto {
			return withNode("Conv", []string{"w"}, nil)
		}, onnx.ErrUnsupported, "operator Conv"},
		{"LSTM", func() *onnxpb.ModelProto {
			m := withNode("LSTM", []string{"w", "w"}, nil, onnxtest.AttrI("hidden_size", 3))
			m.Graph.Node[2].Output = []string{"y", "y_h", "y_c"}
			return m
		}, onnx.ErrUnsupported, "operator LSTM"},
		{"Loop", func() *onnxpb.ModelProto {
			return withNode("Loop", nil, nil)
		}, onnx.ErrUnsupported, "operator Loop"},
		{"unneeded Conv", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node = append(m.Graph.Node, onnxtest.Node("Conv", []string{"h", "w"}, []string{"c"}))
			return m
		}, onnx.ErrUnsupported, "operator Conv"},
		{"another domain", func() *onnxpb.ModelProto {
			m := withNode("Normalizer", nil, nil)
			m.Graph.Node[2].Domain = proto.String("ai.onnx.ml")
			return m
		}, onnx.ErrUnsupported, `Normalizer of domain "ai.onnx.ml"`},
		{"second input", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input = append(m.Graph.Input, onnxtest.Info("z", float, "batch", 4))
			return m
		}, onnx.ErrUnsupported, `2 inputs ["x" "z"]`},
		{"second output", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Output = append(m.Graph.Output, onnxtest.Info("h", float, "batch", 3))
			return m
		}, onnx.ErrUnsupported, `2 outputs ["y" "h"]`},
		{"double input", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input[0] = onnxtest.Info("x", onnxpb.TensorProto_DOUBLE, "batch", 4)
			return m
		}, onnx.ErrUnsupported, `input "x": data type DOUBLE`},
		{"int64 initializer", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Initializer[1] = &onnxpb.TensorProto{Name: proto.String("b"), Dims: []int64{3},
				DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: []int64{1, 2, 3}}
			return m
		}, onnx.ErrUnsupported, `initializer "b": data type INT64`},
		{"float16 output", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Output[0] = onnxtest.Info("y", onnxpb.TensorProto_FLOAT16, "batch", 3)
			return m
		}, onnx.ErrUnsupported, `output "y": data type FLOAT16`},
		{"symbolic features", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input[0] = onnxtest.Info("x", float, "batch", "n")
			return m
		}, onnx.ErrUnsupported, `input "x": dimension 1 is "n"`},
		{"rank 1 input", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input[0] = onnxtest.Info("x", float, 4)
			return m
		}, onnx.ErrUnsupported, `input "x" has rank 1`},
		{"external data", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Initializer[0].DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
			return m
		}, onnx.ErrUnsupported, `initializer "w": external data`},
		{"old opset", func() *onnxpb.ModelProto {
			m := tiny()
			m.OpsetImport[0].Version = proto.Int64(6)
			return m
		}, onnx.ErrUnsupported, "opset 6"},
		{"unknown attribute", func() *onnxpb.ModelProto {
			return withNode("Sigmoid", nil, nil, onnxtest.AttrF("beta", 2))
		}, onnx.ErrUnsupported, `attribute "beta"`},
		{"transA", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node[0].Attribute = append(m.Graph.Node[0].Attribute, onnxtest.AttrI("transA", 1))
			return m
		}, onnx.ErrUnsupported, "transA=1"},
		{"softmax over the batch", func() *onnxpb.ModelProto {
			return withNode("Softmax", nil, nil, onnxtest.AttrI("axis", 0))
		}, onnx.ErrUnsupported, "axis 0, the batch dimension"},
		{"concat over the batch", func() *onnxpb.ModelProto {
			return withNode("Concat", []string{"r"}, nil, onnxtest.AttrI("axis", -2))
		}, onnx.ErrUnsupported, "axis 0, the batch dimension"},
		{"flatten axis 0", func() *onnxpb.ModelProto {
			return withNode("Flatten", nil, nil, onnxtest.AttrI("axis", 0))
		}, onnx.ErrUnsupported, "axis 0 mixes the batch dimension"},
		{"batch norm in training", func() *onnxpb.ModelProto {
			p := []float32{1, 1, 1}
			return withNode("BatchNormalization", []string{"s", "s", "s", "s"},
				[]*onnxpb.TensorProto{onnxtest.Tensor("s", []int64{3}, p)}, onnxtest.AttrI("training_mode", 1))
		}, onnx.ErrUnsupported, "training_mode=1"},
		{"batch norm outputs", func() *onnxpb.ModelProto {
			p := []float32{1, 1, 1}
			m := withNode("BatchNormalization", []string{"s", "s", "s", "s"}, []*onnxpb.TensorProto{onnxtest.Tensor("s", []int64{3}, p)})
			m.Graph.Node[2].Output = append(m.Graph.Node[2].Output, "mean")
			return m
		}, onnx.ErrUnsupported, `output 1 "mean", of training mode`},
		{"weights from the input", func() *onnxpb.ModelProto {
			return withNode("MatMul", []string{"r"}, nil)
		}, onnx.ErrUnsupported, "second operand is computed from the input"},
		{"constant varying along the batch", func() *onnxpb.ModelProto {
			return withNode("Add", []string{"c"}, []*onnxpb.TensorProto{onnxtest.Tensor("c", []int64{2, 3}, make([]float32, 6))})
		}, onnx.ErrUnsupported, "shape [2 3] varies along the batch dimension"},
		{"constant output", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Output[0] = onnxtest.Info("b", float, 3)
			return m
		}, onnx.ErrUnsupported, `output "b" does not depend on the input`},
		{"sparse initializer", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.SparseInitializer = []*onnxpb.SparseTensorProto{{Values: onnxtest.Tensor("s", []int64{1}, []float32{1})}}
			return m
		}, onnx.ErrUnsupported, `sparse initializer "s"`},

		{"not protobuf", nil, onnx.ErrMalformed, "not a ModelProto"},
		{"no graph", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph = nil
			return m
		}, onnx.ErrMalformed, "no graph"},
		{"no opset", func() *onnxpb.ModelProto {
			m := tiny()
			m.OpsetImport = nil
			return m
		}, onnx.ErrMalformed, "no version of the default domain"},
		{"cycle", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node[0].Input[0] = "y"
			return m
		}, onnx.ErrMalformed, "cycle"},
		{"self loop", func() *onnxpb.ModelProto {
			return withNode("Add", []string{"y"}, nil)
		}, onnx.ErrMalformed, "cycle"},
		{"undefined input", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node[0].Input[2] = "nowhere"
			return m
		}, onnx.ErrMalformed, `input "nowhere" is not defined`},
		{"undefined output", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Output[0] = onnxtest.Info("nowhere", float, "batch", 3)
			return m
		}, onnx.ErrMalformed, `output "nowhere" is not defined`},
		{"defined twice", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node[1].Output[0] = "h"
			return m
		}, onnx.ErrMalformed, `value "h" is defined twice`},
		{"short raw_data", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Initializer[0] = onnxtest.RawTensor("w", []int64{3, 4}, make([]float32, 11))
			return m
		}, onnx.ErrMalformed, "44 bytes of raw_data for shape [3 4]"},
		{"short float_data", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Initializer[0].FloatData = m.Graph.Initializer[0].FloatData[:5]
			return m
		}, onnx.ErrMalformed, "5 values of float_data"},
		{"shapes that do not multiply", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node[0].Attribute = nil // transB=0: w is [3, 4], A [?, 4]
			return m
		}, onnx.ErrMalformed, "do not multiply"},
		{"shapes that do not broadcast", func() *onnxpb.ModelProto {
			return withNode("Mul", []string{"c"}, []*onnxpb.TensorProto{onnxtest.Tensor("c", []int64{2}, []float32{1, 2})})
		}, onnx.ErrMalformed, "do not broadcast"},
		{"declared output shape", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Output[0] = onnxtest.Info("y", float, "batch", 4)
			return m
		}, onnx.ErrMalformed, `output "y" is declared ["batch", 4] but computes [?, 3]`},
		{"mistyped attribute", func() *onnxpb.ModelProto {
			return withNode("LeakyRelu", nil, nil, onnxtest.AttrI("alpha", 1))
		}, onnx.ErrMalformed, `attribute "alpha" has type INT, want FLOAT`},
		{"arity", func() *onnxpb.ModelProto {
			return withNode("Relu", []string{"r"}, nil)
		}, onnx.ErrMalformed, "2 inputs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := []byte("\xff\xff not a model")
			if c.model != nil {
				data = onnxtest.Marshal(t, c.model())
			}
			m, err := onnx.Parse(data)
			switch {
			case err == nil:
				t.Fatal("accepted")
			case m != nil:
				t.Errorf("a model along with the error %v", err)
			case !errors.Is(err, c.target):
				t.Errorf("error %v; want %v", err, c.target)
			case !strings.Contains(err.Error(), c.text):
				t.Errorf("error %q does not say %q", err, c.text)
			}
			t.Log(err)
		})
	}
}

// TestAccepted checks graphs at the edges of what is supported.
func TestAccepted(t *testing.T) {
	cases := []struct {
		name  string
		model func() *onnxpb.ModelProto
		in    []float32
		want  []float32
	}{
		{"output is the input", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Node = []*onnxpb.NodeProto{onnxtest.Node("Identity", []string{"x"}, []string{"y"})}
			m.Graph.Output[0] = onnxtest.Info("y", float, "batch", 4)
			return m
		}, []float32{1, -2, 3, -4}, []float32{1, -2, 3, -4}},
		{"fixed batch of 1", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input[0] = onnxtest.Info("x", float, 1, 4)
			m.Graph.Output[0] = onnxtest.Info("y", float, 1, 3)
			return m
		}, []float32{1, 1, 1, 1, 0, 0, 0, 0}, []float32{10.1, 0, 0.7, 0.1, 0.2, 0}},
		{"opset 7 and the ai.onnx domain", func() *onnxpb.ModelProto {
			m := tiny()
			m.OpsetImport[0] = &onnxpb.OperatorSetIdProto{Domain: proto.String("ai.onnx"), Version: proto.Int64(7)}
			return m
		}, []float32{1, 1, 1, 1}, []float32{10.1, 0, 0.7}},
		{"initializers among the inputs", func() *onnxpb.ModelProto {
			m := tiny()
			m.Graph.Input = append(m.Graph.Input, onnxtest.Info("w", float, 3, 4), onnxtest.Info("b", float, 3))
			return m
		}, []float32{1, 1, 1, 1}, []float32{10.1, 0, 0.7}},
		{"folded constants", func() *onnxpb.ModelProto {
			// y = r · (s·2 + 1) - (tanh(0)), with s·2 + 1 folded at load.
			m := withNode("Mul", []string{"k"}, []*onnxpb.TensorProto{
				onnxtest.Tensor("s", []int64{1, 3}, []float32{1, 2, 3}),
				onnxtest.Tensor("two", nil, []float32{2}),
				onnxtest.Tensor("one", []int64{1}, []float32{1}),
			})
			g := m.Graph
			g.Node = append(g.Node[:2:2],
				onnxtest.Node("Mul", []string{"s", "two"}, []string{"s2"}),
				onnxtest.Node("Add", []string{"s2", "one"}, []string{"k"}),
				onnxtest.Node("Identity", []string{"k"}, []string{"k2"}),
				onnxtest.Node("Flatten", []string{"k2"}, []string{"k3"}),
				onnxtest.Node("Mul", []string{"r", "k3"}, []string{"y"}))
			return m
		}, []float32{1, 1, 1, 1}, []float32{30.3, 0, 4.9}},
		{"nodes out of order", func() *onnxpb.ModelProto {
			m := tiny()
			g := m.Graph
			g.Node[0], g.Node[1] = g.Node[1], g.Node[0]
			return m
		}, []float32{1, 1, 1, 1}, []float32{10.1, 0, 0.7}},
		{"broadcast both ways", func() *onnxpb.ModelProto {
			// x [batch, 2, 1] + [1, 3] is [batch, 2, 3], times [2, 1].
			m := onnxtest.NewModel([]*onnxpb.NodeProto{
				onnxtest.Node("Add", []string{"x", "c"}, []string{"s"}),
				onnxtest.Node("Mul", []string{"s", "d"}, []string{"p"}),
				onnxtest.Node("Flatten", []string{"p"}, []string{"y"}),
			}, []*onnxpb.TensorProto{
				onnxtest.Tensor("c", []int64{1, 3}, []float32{1, 2, 3}),
				onnxtest.Tensor("d", []int64{2, 1}, []float32{10, -1}),
			},
				[]*onnxpb.ValueInfoProto{onnxtest.Info("x", float, "batch", 2, 1)},
				[]*onnxpb.ValueInfoProto{onnxtest.Info("y", float, "batch", 6)})
			return m
		}, []float32{1, 2, 0, 0}, []float32{20, 30, 40, -3, -4, -5, 10, 20, 30, -1, -2, -3}},
		{"concat inside rows", func() *onnxpb.ModelProto {
			// [batch, 2, 2] joined to itself along axis 2, then along -1.
			m := onnxtest.NewModel([]*onnxpb.NodeProto{
				onnxtest.Node("Concat", []string{"x", "x"}, []string{"c"}, onnxtest.AttrI("axis", 2)),
				onnxtest.Node("Concat", []string{"c", "x"}, []string{"d"}, onnxtest.AttrI("axis", -1)),
				onnxtest.Node("Flatten", []string{"d"}, []string{"y"}),
			}, nil,
				[]*onnxpb.ValueInfoProto{onnxtest.Info("x", float, "batch", 2, 2)},
				[]*onnxpb.ValueInfoProto{onnxtest.Info("y", float, "batch", 12)})
			return m
		}, []float32{1, 2, 3, 4}, []float32{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}},
		{"vector weights", func() *onnxpb.ModelProto {
			// MatMul by a [3] vector gives [batch]; adding a [1] keeps it.
			m := withNode("MatMul", []string{"v"}, []*onnxpb.TensorProto{onnxtest.Tensor("v", []int64{3}, []float32{1, 1, 1})})
			g := m.Graph
			g.Node[2].Output[0] = "s"
			g.Node = append(g.Node, onnxtest.Node("Add", []string{"s", "one"}, []string{"y"}))
			g.Initializer = append(g.Initializer, onnxtest.Tensor("one", []int64{1}, []float32{1}))
			g.Output[0] = onnxtest.Info("y", float, "batch")
			return m
		}, []float32{1, 1, 1, 1}, []float32{11.8}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnx.Parse(onnxtest.Marshal(t, c.model()))
			if err != nil {
				t.Fatal(err)
			}
			rows := len(c.in) / m.NumFeatures()
			out := make([]float32, rows*m.NumOutputs())
			m.Predict(c.in, rows, out)
			if !near(out, c.want) {
				t.Errorf("got %v, want %v", out, c.want)
			}
		})
	}
}
