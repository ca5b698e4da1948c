package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/quiver-ml/quiver/model/onnx/internal/onnxpb"
)

const (
	// minOpset is the oldest version of the default operator set accepted:
	// version 7 brought numpy-style broadcasting to Add, Mul, Sub and Gemm,
	// and dropped the legacy attributes of earlier versions.
	minOpset = 7
	// maxWidth bounds the elements of a row of any value, the input's and
	// the output's among them: 4 MiB a row.
	maxWidth = 1 << 20
	// maxRowWidth bounds the scratch elements of a row: all the values
	// alive at once.
	maxRowWidth = 1 << 22
	// maxElements bounds the elements of a constant; its data must be in
	// the file anyway.
	maxElements = 1 << 30
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// Parse reads an ONNX model: a serialized ModelProto, what onnx.save and the
// exporters of PyTorch, TensorFlow and scikit-learn write to a .onnx file.
// It refuses what this package cannot evaluate with ErrUnsupported, and an
// inconsistent model with ErrMalformed; either error names what it refuses.
func Parse(data []byte) (*Model, error) {
	var mp onnxpb.ModelProto
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &mp); err != nil {
		return nil, malformed("not a ModelProto: %v", err)
	}
	return compile(&mp)
}

// opset is the version of the default operator set (ai.onnx) that the model
// imports.
func opset(mp *onnxpb.ModelProto) (int64, error) {
	version := int64(-1)
	for _, o := range mp.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			if version >= 0 && o.GetVersion() != version {
				return 0, malformed("opset_import has versions %d and %d of the default domain", version, o.GetVersion())
			}
			version = o.GetVersion()
		}
	}
	switch {
	case version < 0:
		return 0, malformed("opset_import has no version of the default domain (ai.onnx)")
	case version < minOpset:
		return 0, unsupported("opset %d of the default domain; the oldest supported is %d", version, minOpset)
	}
	return version, nil
}

// constant reads an initializer: a float32 tensor, its data little-endian
// in raw_data or in float_data.
func constant(t *onnxpb.TensorProto, what string) (*tensor, error) {
	if dt := onnxpb.TensorProto_DataType(t.GetDataType()); dt != onnxpb.TensorProto_FLOAT {
		return nil, unsupported("%s: data type %s; only FLOAT is supported", what, dt)
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0 {
		return nil, unsupported("%s: external data", what)
	}
	if t.GetSegment() != nil {
		return nil, unsupported("%s: a segment of a tensor", what)
	}
	dims := make([]int, len(t.GetDims()))
	n := 1
	for i, d := range t.GetDims() {
		if d <= 0 || d > maxElements || n*int(d) > maxElements {
			if d == 0 {
				return nil, unsupported("%s: empty tensor of shape %v", what, t.GetDims())
			}
			return nil, malformed("%s: shape %v", what, t.GetDims())
		}
		dims[i] = int(d)
		n *= int(d)
	}
	raw, fd := t.GetRawData(), t.GetFloatData()
	if len(t.GetInt32Data())+len(t.GetInt64Data())+len(t.GetDoubleData())+len(t.GetUint64Data())+len(t.GetStringData()) > 0 {
		return nil, malformed("%s: a FLOAT tensor with data of another type", what)
	}
	var data []float32
	switch {
	case len(raw) > 0 && len(fd) > 0:
		return nil, malformed("%s: both raw_data and float_data", what)
	case len(raw) > 0:
		if len(raw) != 4*n {
			return nil, malformed("%s: %d bytes of raw_data for shape %v", what, len(raw), dims)
		}
		data = make([]float32, n)
		for i := range data {
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	default:
		if len(fd) != n {
			return nil, malformed("%s: %d values of float_data for shape %v", what, len(fd), dims)
		}
		data = fd
	}
	return &tensor{dims: dims, data: data}, nil
}

// inputDims is the shape of the graph's input after its batch dimension.
func inputDims(vi *onnxpb.ValueInfoProto) ([]int, error) {
	name := vi.GetName()
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return nil, unsupported("input %q is not a tensor", name)
	}
	if dt := onnxpb.TensorProto_DataType(tt.GetElemType()); dt != onnxpb.TensorProto_FLOAT {
		return nil, unsupported("input %q: data type %s; only FLOAT is supported", name, dt)
	}
	if tt.GetShape() == nil {
		return nil, unsupported("input %q has no shape; want [batch, features]", name)
	}
	shape := tt.GetShape().GetDim()
	if len(shape) < 2 {
		return nil, unsupported("input %q has rank %d; want [batch, features]", name, len(shape))
	}
	dims := make([]int, len(shape)-1)
	width := 1
	for i, d := range shape[1:] {
		v := d.GetDimValue()
		if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); !ok || v <= 0 {
			return nil, unsupported("input %q: dimension %d is %s; only the first, the batch, may vary", name, i+1, dimString(d))
		}
		if v > maxWidth || width*int(v) > maxWidth {
			return nil, unsupported("input %q: shape %s has more than %d elements a row", name, shapeString(shape), maxWidth)
		}
		dims[i] = int(v)
		width *= int(v)
	}
	return dims, nil
}

func dimString(d *onnxpb.TensorShapeProto_Dimension) string {
	switch v := d.GetValue().(type) {
	case *onnxpb.TensorShapeProto_Dimension_DimValue:
		return fmt.Sprint(v.DimValue)
	case *onnxpb.TensorShapeProto_Dimension_DimParam:
		return fmt.Sprintf("%q", v.DimParam)
	}
	return "?"
}

func shapeString(dims []*onnxpb.TensorShapeProto_Dimension) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = dimString(d)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// rowShape writes a batch value's shape, ? for the batch dimension.
func rowShape(dims []int) string {
	var b strings.Builder
	b.WriteString("[?")
	for _, d := range dims {
		fmt.Fprintf(&b, ", %d", d)
	}
	b.WriteString("]")
	return b.String()
}

// nodeName names a node in errors: by its name and operator when it has a
// name, by its position in the graph otherwise.
func nodeName(i int, n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), n.GetOpType())
	}
	return fmt.Sprintf("node %d (%s)", i, n.GetOpType())
}

// order sorts the nodes topologically, keeping the order of the file among
// nodes that are ready together. defined holds the names of the graph's
// input and initializers. It refuses an input that nothing defines, a value
// defined twice and a cycle.
func order(nodes []*onnxpb.NodeProto, defined map[string]bool) ([]int, error) {
	producer := make(map[string]int, len(nodes))
	for i, n := range nodes {
		for _, out := range n.GetOutput() {
			if out == "" {
				continue
			}
			if _, dup := producer[out]; dup || defined[out] {
				return nil, malformed("%s: value %q is defined twice", nodeName(i, n), out)
			}
			producer[out] = i
		}
	}
	waiting := make([]int, len(nodes)) // inputs each node waits for
	consumers := make(map[string][]int)
	for i, n := range nodes {
		for _, in := range n.GetInput() {
			if in == "" || defined[in] {
				continue
			}
			if _, ok := producer[in]; !ok {
				return nil, malformed("%s: input %q is not defined", nodeName(i, n), in)
			}
			waiting[i]++
			consumers[in] = append(consumers[in], i)
		}
	}
	sorted := make([]int, 0, len(nodes))
	for i := range nodes {
		if waiting[i] == 0 {
			sorted = append(sorted, i)
		}
	}
	for k := 0; k < len(sorted); k++ {
		for _, out := range nodes[sorted[k]].GetOutput() {
			if out == "" {
				continue
			}
			for _, c := range consumers[out] {
				if waiting[c]--; waiting[c] == 0 {
					sorted = append(sorted, c)
				}
			}
		}
	}
	if len(sorted) < len(nodes) {
		for i, n := range nodes {
			if waiting[i] > 0 {
				return nil, malformed("%s is on a cycle, or after one", nodeName(i, n))
			}
		}
	}
	return sorted, nil
}
