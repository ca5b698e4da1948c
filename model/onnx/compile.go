package onnx

import (
	"fmt"
	"math"
	"slices"

	"github.com/quiver-ml/quiver/model/onnx/internal/onnxpb"
)

// A tensor is a constant: an initializer, or a value computed from
// initializers only.
type tensor struct {
	dims []int
	data []float32
}

// A value is what a name of the graph stands for while it compiles: a
// constant, or a batch value, computed from the input, which has a row of
// width elements of shape dims for each row of the input.
type value struct {
	name  string
	konst *tensor // non-nil for a constant
	dims  []int   // a batch value's shape after the batch dimension
	width int     // the product of dims
	slot  int     // a batch value's slot
	// dense is the step that writes the value, while it may still take a
	// bias or an activation: when the value is used once, by that.
	dense *denseStep
}

// A compiler turns the nodes of a graph, in topological order, into steps.
type compiler struct {
	opset  int64
	values map[string]*value
	uses   map[string]int // how many times nodes that matter, and the output, read a value
	slots  []slot
	steps  []step
	emit   bool // whether the node being compiled matters to the output
	// derived counts the elements of memory the compiler has allocated for
	// what is not in the file: index maps and folded constants.
	derived int
}

// maxDerived bounds compiler.derived, so that a small file cannot ask for
// gigabytes.
const maxDerived = 1 << 25

// budget counts n elements against maxDerived.
func (c *compiler) budget(where string, n int) error {
	if c.derived += n; c.derived > maxDerived {
		return unsupported("%s: the model needs more than %d elements of memory for broadcasts and constants", where, maxDerived)
	}
	return nil
}

func compile(mp *onnxpb.ModelProto) (*Model, error) {
	version, err := opset(mp)
	if err != nil {
		return nil, err
	}
	g := mp.GetGraph()
	if g == nil {
		return nil, malformed("no graph")
	}
	if sp := g.GetSparseInitializer(); len(sp) > 0 {
		return nil, unsupported("sparse initializer %q", sp[0].GetValues().GetName())
	}
	c := &compiler{opset: version, values: make(map[string]*value), uses: make(map[string]int)}
	defined := make(map[string]bool)
	for i, t := range g.GetInitializer() {
		name := t.GetName()
		if name == "" {
			return nil, malformed("initializer %d has no name", i)
		}
		if defined[name] {
			return nil, malformed("initializer %q is defined twice", name)
		}
		k, err := constant(t, fmt.Sprintf("initializer %q", name))
		if err != nil {
			return nil, err
		}
		c.values[name] = &value{name: name, konst: k}
		defined[name] = true
	}

	// The input: the graph's inputs less the initializers, which models of
	// IR version 3 list among them.
	var inputs []string
	var input *onnxpb.ValueInfoProto
	for _, in := range g.GetInput() {
		if !defined[in.GetName()] {
			inputs = append(inputs, fmt.Sprintf("%q", in.GetName()))
			input = in
		}
	}
	switch {
	case len(inputs) == 0:
		return nil, unsupported("a graph without an input")
	case len(inputs) > 1:
		return nil, unsupported("%d inputs %v; want one", len(inputs), inputs)
	case input.GetName() == "":
		return nil, malformed("the input has no name")
	}
	dims, err := inputDims(input)
	if err != nil {
		return nil, err
	}
	in := &value{name: input.GetName(), dims: dims, width: prod(dims)}
	c.slots = append(c.slots, slot{width: in.width, buf: bufInput})
	c.values[in.name] = in
	defined[in.name] = true

	outputs := g.GetOutput()
	if len(outputs) != 1 {
		names := make([]string, len(outputs))
		for i, o := range outputs {
			names[i] = fmt.Sprintf("%q", o.GetName())
		}
		if len(outputs) == 0 {
			return nil, malformed("a graph without an output")
		}
		return nil, unsupported("%d outputs %v; want one", len(outputs), names)
	}
	output := outputs[0]
	if t := output.GetType(); t != nil {
		tt := t.GetTensorType()
		if tt == nil {
			return nil, unsupported("output %q is not a tensor", output.GetName())
		}
		if dt := onnxpb.TensorProto_DataType(tt.GetElemType()); dt != onnxpb.TensorProto_FLOAT && dt != onnxpb.TensorProto_UNDEFINED {
			return nil, unsupported("output %q: data type %s; only FLOAT is supported", output.GetName(), dt)
		}
	}

	nodes := g.GetNode()
	sorted, err := order(nodes, defined)
	if err != nil {
		return nil, err
	}
	// The nodes the output depends on, and how often each value is read by
	// them; the others are checked but not evaluated.
	needed := make([]bool, len(nodes))
	wanted := map[string]bool{output.GetName(): true}
	c.uses[output.GetName()]++
	for _, i := range slices.Backward(sorted) {
		for _, out := range nodes[i].GetOutput() {
			if out != "" && wanted[out] {
				needed[i] = true
			}
		}
		if needed[i] {
			for _, in := range nodes[i].GetInput() {
				if in != "" {
					wanted[in] = true
					c.uses[in]++
				}
			}
		}
	}
	for _, i := range sorted {
		c.emit = needed[i]
		if err := c.node(nodeName(i, nodes[i]), nodes[i]); err != nil {
			return nil, err
		}
	}

	out := c.values[output.GetName()]
	switch {
	case out == nil:
		return nil, malformed("output %q is not defined", output.GetName())
	case out.konst != nil:
		return nil, unsupported("output %q does not depend on the input", out.name)
	}
	if err := checkShape(output, out); err != nil {
		return nil, err
	}
	if out.slot == 0 {
		// The output is the input, or an alias of it.
		c.emit = true
		y := c.batch(out.name, out.dims)
		c.add(&copyStep{in: 0, out: y.slot})
		out = y
	}
	c.slots[out.slot].buf = bufOutput
	m := &Model{
		inputName:   in.name,
		outputName:  out.name,
		numFeatures: in.width,
		numOutputs:  out.width,
		steps:       c.steps,
		slots:       c.slots,
	}
	if err := m.allocate(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkShape checks the shape the graph declares for its output, where it
// declares one, against the one computed.
func checkShape(vi *onnxpb.ValueInfoProto, v *value) error {
	shape := vi.GetType().GetTensorType().GetShape()
	if shape == nil {
		return nil
	}
	dims := shape.GetDim()
	ok := len(dims) == len(v.dims)+1
	for i := 1; ok && i < len(dims); i++ {
		d, fixed := dims[i].GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue)
		ok = !fixed || d.DimValue == int64(v.dims[i-1])
	}
	if !ok {
		return malformed("output %q is declared %s but computes %s", v.name, shapeString(dims), rowShape(v.dims))
	}
	return nil
}

func prod(dims []int) int {
	p := 1
	for _, d := range dims {
		p *= d
	}
	return p
}

// add appends a step, unless the node being compiled does not matter.
func (c *compiler) add(s step) {
	if c.emit {
		c.steps = append(c.steps, s)
	}
}

// batch defines a batch value in a new slot.
func (c *compiler) batch(name string, dims []int) *value {
	v := &value{name: name, dims: dims, width: prod(dims), slot: len(c.slots)}
	c.slots = append(c.slots, slot{width: v.width, buf: bufNone})
	c.values[name] = v
	return v
}

// checkWidth refuses a batch value of shape dims whose rows are too large;
// it is called before prod(dims) could overflow.
func checkWidth(where string, dims []int) error {
	w := 1
	for _, d := range dims {
		if d > maxWidth || w*d > maxWidth {
			return unsupported("%s: a value of shape %s, more than %d elements a row", where, rowShape(dims), maxWidth)
		}
		w *= d
	}
	return nil
}

// define names a constant.
func (c *compiler) define(name string, t *tensor) {
	c.values[name] = &value{name: name, konst: t}
}

// alias names a batch value by a second name, with the shape dims.
func (c *compiler) alias(name string, v *value, dims []int) {
	c.values[name] = &value{name: name, dims: dims, width: v.width, slot: v.slot}
}

// fusable is the dense step that writes v, if a node that reads v can be
// folded into it: v is read by that node only, and that node matters.
func (c *compiler) fusable(v *value) *denseStep {
	if !c.emit || v.dense == nil || c.uses[v.name] != 1 {
		return nil
	}
	return v.dense
}

// attrs are the attributes of a node, by name.
type attrs struct {
	where string
	m     map[string]*onnxpb.AttributeProto
}

// attributes reads the attributes of a node, refusing any that is not
// among known.
func attributes(where string, n *onnxpb.NodeProto, known ...string) (attrs, error) {
	a := attrs{where: where, m: make(map[string]*onnxpb.AttributeProto)}
	for _, at := range n.GetAttribute() {
		name := at.GetName()
		switch {
		case at.GetRefAttrName() != "":
			return a, unsupported("%s: attribute %q refers to a function's attribute", where, name)
		case !slices.Contains(known, name):
			return a, unsupported("%s: attribute %q", where, name)
		case a.m[name] != nil:
			return a, malformed("%s: attribute %q is given twice", where, name)
		}
		a.m[name] = at
	}
	return a, nil
}

func (a attrs) float(name string, def float32) (float32, error) {
	at := a.m[name]
	if at == nil {
		return def, nil
	}
	if at.GetType() != onnxpb.AttributeProto_FLOAT {
		return 0, malformed("%s: attribute %q has type %s, want FLOAT", a.where, name, at.GetType())
	}
	return at.GetF(), nil
}

func (a attrs) int(name string, def int64) (int64, error) {
	at := a.m[name]
	if at == nil {
		return def, nil
	}
	if at.GetType() != onnxpb.AttributeProto_INT {
		return 0, malformed("%s: attribute %q has type %s, want INT", a.where, name, at.GetType())
	}
	return at.GetI(), nil
}

// axis reads the axis attribute for a value of rank rank, and normalizes
// it: a negative one counts from the end. The axis may equal rank when
// inclusive.
func (a attrs) axis(def int64, rank int, inclusive bool) (int, error) {
	ax, err := a.int("axis", def)
	if err != nil {
		return 0, err
	}
	hi := int64(rank)
	if inclusive {
		hi++
	}
	if ax < -int64(rank) || ax >= hi {
		return 0, malformed("%s: axis %d of a value of rank %d", a.where, ax, rank)
	}
	if ax < 0 {
		ax += int64(rank)
	}
	return int(ax), nil
}

// flag reads a 0/1 attribute that must have the value want.
func (a attrs) flag(name string, def, want int64) error {
	v, err := a.int(name, def)
	if err != nil {
		return err
	}
	if v != want {
		if v != 0 && v != 1 {
			return malformed("%s: attribute %s=%d", a.where, name, v)
		}
		return unsupported("%s: attribute %s=%d", a.where, name, v)
	}
	return nil
}

// node compiles a node: checks it, defines its output, and adds its step.
func (c *compiler) node(where string, n *onnxpb.NodeProto) error {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return unsupported("%s: operator %s of domain %q", where, n.GetOpType(), d)
	}
	op := n.GetOpType()
	lo, hi := 0, 0 // how many inputs the operator takes
	switch op {
	case "Identity", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Flatten", "Softmax":
		lo, hi = 1, 1
	case "Add", "Sub", "Mul", "MatMul":
		lo, hi = 2, 2
	case "Gemm":
		lo, hi = 2, 3
	case "BatchNormalization":
		lo, hi = 5, 5
	case "Concat":
		lo, hi = 1, math.MaxInt
	default:
		return unsupported("%s: operator %s", where, op)
	}
	outs := n.GetOutput()
	if len(outs) == 0 || outs[0] == "" {
		return malformed("%s: no output", where)
	}
	if len(outs) > 1 && op != "BatchNormalization" {
		return malformed("%s: %d outputs", where, len(outs))
	}
	ins := make([]*value, len(n.GetInput()))
	for i, name := range n.GetInput() {
		if name != "" {
			ins[i] = c.values[name] // order has checked that it is defined
		}
	}
	if len(ins) < lo || len(ins) > hi {
		return malformed("%s: %d inputs", where, len(ins))
	}
	for i, v := range ins[:lo] {
		if v == nil {
			return malformed("%s: input %d is missing", where, i)
		}
	}
	known := map[string][]string{
		"LeakyRelu":          {"alpha"},
		"Gemm":               {"alpha", "beta", "transA", "transB"},
		"Softmax":            {"axis"},
		"Flatten":            {"axis"},
		"Concat":             {"axis"},
		"BatchNormalization": {"epsilon", "momentum", "training_mode", "spatial"},
	}
	a, err := attributes(where, n, known[op]...)
	if err != nil {
		return err
	}
	out := outs[0]
	switch op {
	case "Identity":
		if x := ins[0]; x.konst != nil {
			c.define(out, x.konst)
		} else {
			c.alias(out, x, x.dims)
		}
		return nil
	case "Relu", "Sigmoid", "Tanh", "LeakyRelu":
		return c.activation(a, op, ins[0], out)
	case "Add", "Sub", "Mul":
		return c.binary(where, op, ins[0], ins[1], out)
	case "Gemm":
		var bias *value
		if len(ins) == 3 {
			bias = ins[2]
		}
		return c.gemm(a, ins[0], ins[1], bias, out)
	case "MatMul":
		return c.matmul(where, ins[0], ins[1], out)
	case "Softmax":
		return c.softmax(a, ins[0], out)
	case "Flatten":
		return c.flatten(a, ins[0], out)
	case "BatchNormalization":
		for i, o := range outs[1:] {
			if o != "" {
				return unsupported("%s: output %d %q, of training mode", where, i+1, o)
			}
		}
		return c.batchNorm(a, ins, out)
	default: // Concat
		return c.concat(a, ins, out)
	}
}

func (c *compiler) activation(a attrs, op string, x *value, out string) error {
	act := activation{kind: map[string]actKind{"Relu": actRelu, "Sigmoid": actSigmoid, "Tanh": actTanh, "LeakyRelu": actLeaky}[op]}
	if op == "LeakyRelu" {
		var err error
		if act.alpha, err = a.float("alpha", 0.01); err != nil {
			return err
		}
	}
	if x.konst != nil {
		if err := c.budget(a.where, len(x.konst.data)); err != nil {
			return err
		}
		data := make([]float32, len(x.konst.data))
		act.apply(data, x.konst.data)
		c.define(out, &tensor{dims: x.konst.dims, data: data})
		return nil
	}
	if d := c.fusable(x); d != nil && d.act.kind == actNone {
		y := c.batch(out, x.dims)
		d.out, d.act = y.slot, act
		return nil
	}
	y := c.batch(out, x.dims)
	c.add(&unaryStep{in: x.slot, out: y.slot, width: y.width, act: act})
	return nil
}

// constantResult is the error for a node whose inputs are all constants,
// which only some operators fold.
func constantResult(where string) error {
	return unsupported("%s: all its inputs are constants", where)
}

// broadcastDims is the numpy broadcast of two shapes.
func broadcastDims(a, b []int) ([]int, bool) {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := range n {
		da, db := 1, 1
		if j := i - n + len(a); j >= 0 {
			da = a[j]
		}
		if j := i - n + len(b); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, false
		}
	}
	return out, true
}

// indexMap is, for each element of a tensor of shape out, the element of a
// tensor of shape dims broadcast to it.
func indexMap(dims, out []int) []int32 {
	pad := len(out) - len(dims)
	strides := make([]int, len(out)) // 0 along broadcast dimensions
	s := 1
	for i := len(dims) - 1; i >= 0; i-- {
		if dims[i] != 1 {
			strides[pad+i] = s
		}
		s *= dims[i]
	}
	m := make([]int32, prod(out))
	idx := make([]int, len(out))
	at := 0
	for k := range m {
		m[k] = int32(at)
		for i := len(out) - 1; i >= 0; i-- {
			idx[i]++
			at += strides[i]
			if idx[i] < out[i] {
				break
			}
			at -= idx[i] * strides[i]
			idx[i] = 0
		}
	}
	return m
}

func (c *compiler) binary(where, opName string, x, y *value, out string) error {
	op := map[string]binOp{"Add": opAdd, "Sub": opSub, "Mul": opMul}[opName]
	if x.konst != nil && y.konst != nil {
		dims, ok := broadcastDims(x.konst.dims, y.konst.dims)
		if !ok {
			return malformed("%s: shapes %v and %v do not broadcast", where, x.konst.dims, y.konst.dims)
		}
		if err := checkWidth(where, dims); err != nil {
			return err
		}
		if err := c.budget(where, 3*prod(dims)); err != nil {
			return err
		}
		data := make([]float32, prod(dims))
		op.gather(data, x.konst.data, y.konst.data, indexMap(x.konst.dims, dims), indexMap(y.konst.dims, dims))
		c.define(out, &tensor{dims: dims, data: data})
		return nil
	}
	// A bias after a MatMul or Gemm goes into its step.
	if op == opAdd {
		v, k := x, y
		if v.konst != nil {
			v, k = y, x
		}
		if d := c.fusable(v); d != nil && k.konst != nil && d.bias == nil && d.act.kind == actNone {
			if bias, ok := rowBias(k.konst, v.dims, d.m); ok {
				z := c.batch(out, v.dims)
				d.out, d.bias, z.dense = z.slot, bias, d
				return nil
			}
		}
	}
	// Shapes after the batch dimension, which the batch values must lead.
	rank := 0
	for _, v := range []*value{x, y} {
		if v.konst == nil {
			rank = max(rank, len(v.dims)+1)
		}
	}
	row := func(v *value) ([]int, error) {
		if v.konst == nil {
			if len(v.dims)+1 != rank {
				return nil, unsupported("%s: operands of shape %s and %s: broadcasting would move the batch dimension", where, shape(x), shape(y))
			}
			return v.dims, nil
		}
		d := v.konst.dims
		switch {
		case len(d) > rank:
			return nil, unsupported("%s: a constant of shape %v has more dimensions than the batch value it meets", where, d)
		case len(d) == rank && d[0] != 1:
			return nil, unsupported("%s: a constant of shape %v varies along the batch dimension", where, d)
		case len(d) == rank:
			return d[1:], nil
		}
		return d, nil
	}
	dx, err := row(x)
	if err != nil {
		return err
	}
	dy, err := row(y)
	if err != nil {
		return err
	}
	dims, ok := broadcastDims(dx, dy)
	if !ok {
		return malformed("%s: shapes %s and %s do not broadcast", where, shape(x), shape(y))
	}
	if err := checkWidth(where, dims); err != nil {
		return err
	}
	z := c.batch(out, dims)
	s := &binaryStep{op: op, out: z.slot, width: z.width}
	s.a, s.b = newOperand(x, dx, dims), newOperand(y, dy, dims)
	if s.a.mode == gather || s.b.mode == gather {
		if err := c.budget(where, 2*z.width); err != nil {
			return err
		}
		s.a.index, s.b.index = indexMap(dx, dims), indexMap(dy, dims)
		s.a.mode, s.b.mode = gather, gather
	}
	c.add(s)
	return nil
}

// shape writes the shape of a value, ? for a batch dimension.
func shape(v *value) string {
	if v.konst != nil {
		return fmt.Sprint(v.konst.dims)
	}
	return rowShape(v.dims)
}

// newOperand is v as an operand of an elementwise step whose rows have shape
// out; dims is v's row shape.
func newOperand(v *value, dims, out []int) operand {
	p := operand{slot: -1, width: prod(dims)}
	if v.konst != nil {
		p.konst = v.konst.data
	} else {
		p.slot = v.slot
	}
	switch {
	case p.width == prod(out):
		p.mode = same
	case p.width == 1:
		p.mode = scalar
	default:
		p.mode = gather
	}
	return p
}

// rowBias is constant k as the bias of a dense step of m outputs (m is the
// last of the step's dimensions dims), if adding it leaves the shape as it
// is: it has no more dimensions than a batch value of shape dims, and all of
// them but its last, m or 1, are 1.
func rowBias(k *tensor, dims []int, m int) ([]float32, bool) {
	d := k.dims
	if len(d) > len(dims)+1 {
		return nil, false
	}
	for i := 0; i+1 < len(d); i++ {
		if d[i] != 1 {
			return nil, false
		}
	}
	bias := make([]float32, m)
	switch {
	case len(k.data) == m:
		copy(bias, k.data)
	case len(k.data) == 1:
		for j := range bias {
			bias[j] = k.data[0]
		}
	default:
		return nil, false
	}
	return bias, true
}

// transpose returns the k×m matrix w as m×k.
func transpose(w []float32, k, m int) []float32 {
	t := make([]float32, len(w))
	for i := range k {
		for j := range m {
			t[j*k+i] = w[i*m+j]
		}
	}
	return t
}

func (c *compiler) gemm(a attrs, x, w, bias *value, out string) error {
	alpha, err := a.float("alpha", 1)
	if err != nil {
		return err
	}
	beta, err := a.float("beta", 1)
	if err != nil {
		return err
	}
	if err := a.flag("transA", 0, 0); err != nil {
		return err
	}
	transB, err := a.int("transB", 0)
	if err != nil {
		return err
	}
	if transB != 0 && transB != 1 {
		return malformed("%s: attribute transB=%d", a.where, transB)
	}
	switch {
	case x.konst != nil && w.konst != nil && (bias == nil || bias.konst != nil):
		return constantResult(a.where)
	case x.konst != nil || w.konst == nil:
		return unsupported("%s: B is computed from the input; only A may be", a.where)
	case bias != nil && bias.konst == nil:
		return unsupported("%s: C is computed from the input", a.where)
	case len(x.dims) != 1 || len(w.konst.dims) != 2:
		return malformed("%s: A of shape %s and B of shape %v; Gemm takes matrices", a.where, shape(x), w.konst.dims)
	}
	k, m := w.konst.dims[0], w.konst.dims[1]
	wt := w.konst.data
	if transB == 1 {
		k, m = m, k
	} else {
		wt = transpose(wt, k, m)
	}
	if x.dims[0] != k {
		return malformed("%s: A of shape %s and B of shape %v (transB=%d) do not multiply", a.where, shape(x), w.konst.dims, transB)
	}
	d := &denseStep{in: x.slot, k: k, m: m, rows: 1, wt: wt, alpha: alpha}
	if bias != nil {
		b, ok := rowBias(bias.konst, []int{m}, m)
		if !ok {
			return malformed("%s: C of shape %v does not broadcast to [?, %d]", a.where, bias.konst.dims, m)
		}
		for j := range b {
			b[j] *= beta
		}
		d.bias = b
	}
	y := c.batch(out, []int{m})
	d.out, y.dense = y.slot, d
	c.add(d)
	return nil
}

func (c *compiler) matmul(where string, x, w *value, out string) error {
	switch {
	case x.konst != nil && w.konst != nil:
		return constantResult(where)
	case w.konst == nil:
		return unsupported("%s: the second operand is computed from the input; only the first may be", where)
	case len(x.dims) == 0:
		return unsupported("%s: the first operand is a vector along the batch dimension", where)
	case len(w.konst.dims) == 0:
		return malformed("%s: the second operand is a scalar", where)
	case len(w.konst.dims) > 2:
		return unsupported("%s: a second operand of rank %d", where, len(w.konst.dims))
	}
	k := x.dims[len(x.dims)-1]
	kd := w.konst.dims
	if kd[0] != k {
		return malformed("%s: operands of shape %s and %v do not multiply", where, shape(x), kd)
	}
	dims := slices.Clone(x.dims[:len(x.dims)-1])
	m, wt := 1, w.konst.data
	if len(kd) == 2 {
		m = kd[1]
		wt = transpose(wt, k, m)
		dims = append(dims, m)
	}
	if err := checkWidth(where, dims); err != nil {
		return err
	}
	y := c.batch(out, dims)
	d := &denseStep{in: x.slot, out: y.slot, k: k, m: m, rows: x.width / k, wt: wt, alpha: 1}
	y.dense = d
	c.add(d)
	return nil
}

func (c *compiler) softmax(a attrs, x *value, out string) error {
	if x.konst != nil {
		return constantResult(a.where)
	}
	def := int64(1) // before opset 13 Softmax flattens the shape from axis on
	if c.opset >= 13 {
		def = -1
	}
	ax, err := a.axis(def, len(x.dims)+1, false)
	if err != nil {
		return err
	}
	if ax == 0 {
		return unsupported("%s: axis 0, the batch dimension", a.where)
	}
	s := &softmaxStep{in: x.slot, width: x.width, outer: prod(x.dims[:ax-1])}
	if c.opset >= 13 {
		s.n, s.inner = x.dims[ax-1], prod(x.dims[ax:])
	} else {
		s.n, s.inner = prod(x.dims[ax-1:]), 1
	}
	y := c.batch(out, x.dims)
	s.out = y.slot
	c.add(s)
	return nil
}

func (c *compiler) flatten(a attrs, x *value, out string) error {
	if x.konst != nil {
		ax, err := a.axis(1, len(x.konst.dims), true)
		if err != nil {
			return err
		}
		d := x.konst.dims
		c.define(out, &tensor{dims: []int{prod(d[:ax]), prod(d[ax:])}, data: x.konst.data})
		return nil
	}
	ax, err := a.axis(1, len(x.dims)+1, true)
	if err != nil {
		return err
	}
	if ax == 0 || prod(x.dims[:ax-1]) != 1 {
		return unsupported("%s: axis %d mixes the batch dimension with others", a.where, ax)
	}
	c.alias(out, x, []int{x.width})
	return nil
}

func (c *compiler) batchNorm(a attrs, ins []*value, out string) error {
	x := ins[0]
	eps, err := a.float("epsilon", 1e-5)
	if err != nil {
		return err
	}
	if _, err := a.float("momentum", 0.9); err != nil {
		return err
	}
	if err := a.flag("training_mode", 0, 0); err != nil {
		return err
	}
	if err := a.flag("spatial", 1, 1); err != nil {
		return err
	}
	if x.konst != nil {
		return constantResult(a.where)
	}
	if len(x.dims) == 0 {
		return malformed("%s: an input of shape %s has no channels", a.where, shape(x))
	}
	channels := x.dims[0]
	var p [4][]float32 // scale, B, mean, var
	for i, v := range ins[1:] {
		if v.konst == nil {
			return unsupported("%s: input %d is computed from the input", a.where, i+1)
		}
		if len(v.konst.dims) != 1 || v.konst.dims[0] != channels {
			return malformed("%s: input %d has shape %v; want [%d]", a.where, i+1, v.konst.dims, channels)
		}
		p[i] = v.konst.data
	}
	s := &affineStep{in: x.slot, width: x.width, channels: channels,
		mean: p[2], scale: make([]float32, channels), shift: p[1]}
	for ch := range channels {
		s.scale[ch] = float32(float64(p[0][ch]) / math.Sqrt(float64(p[3][ch])+float64(eps)))
	}
	y := c.batch(out, x.dims)
	s.out = y.slot
	c.add(s)
	return nil
}

func (c *compiler) concat(a attrs, ins []*value, out string) error {
	if a.m["axis"] == nil {
		return malformed("%s: no axis", a.where)
	}
	consts := 0
	for i, v := range ins {
		if v == nil {
			return malformed("%s: input %d is missing", a.where, i)
		}
		if v.konst != nil {
			consts++
		}
	}
	if consts == len(ins) {
		return constantResult(a.where)
	}
	if consts > 0 {
		return unsupported("%s: it joins constants to values computed from the input", a.where)
	}
	first := ins[0]
	ax, err := a.axis(0, len(first.dims)+1, false)
	if err != nil {
		return err
	}
	if ax == 0 {
		return unsupported("%s: axis 0, the batch dimension", a.where)
	}
	dims := slices.Clone(first.dims)
	dims[ax-1] = 0
	s := &concatStep{outer: prod(first.dims[:ax-1])}
	for _, v := range ins {
		ok := len(v.dims) == len(dims)
		for i := 0; ok && i < len(dims); i++ {
			ok = i == ax-1 || v.dims[i] == dims[i]
		}
		if !ok {
			return malformed("%s: inputs of shape %s and %s", a.where, shape(first), shape(v))
		}
		if dims[ax-1] += v.dims[ax-1]; dims[ax-1] > maxWidth {
			return unsupported("%s: a value of more than %d elements a row", a.where, maxWidth)
		}
		s.ins = append(s.ins, v.slot)
		s.blocks = append(s.blocks, v.width/s.outer)
	}
	if err := checkWidth(a.where, dims); err != nil {
		return err
	}
	y := c.batch(out, dims)
	s.out, s.width = y.slot, y.width
	c.add(s)
	return nil
}
