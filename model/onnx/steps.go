package onnx

import "math"

// A step computes one value, row by row, from others, for a chunk of rows:
// v[s] holds slot s for those rows, row-major.
type step interface {
	run(v [][]float32, n int)
	inputs() []int
	output() int
	// cost is roughly the work of a row, in multiply-adds.
	cost() int
}

// An actKind is an elementwise activation.
type actKind uint8

const (
	actNone actKind = iota
	actRelu
	actLeaky
	actSigmoid
	actTanh
)

type activation struct {
	kind  actKind
	alpha float32 // LeakyRelu's slope below 0
}

// apply writes the activation of src to dst, which may be src. A NaN stays
// NaN.
func (a activation) apply(dst, src []float32) {
	dst = dst[:len(src)]
	switch a.kind {
	case actNone:
		copy(dst, src)
	case actRelu:
		for i, v := range src {
			if v < 0 {
				v = 0
			}
			dst[i] = v
		}
	case actLeaky:
		for i, v := range src {
			if v < 0 {
				v *= a.alpha
			}
			dst[i] = v
		}
	case actSigmoid:
		for i, v := range src {
			dst[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case actTanh:
		for i, v := range src {
			dst[i] = float32(math.Tanh(float64(v)))
		}
	}
}

func (a activation) cost() int {
	switch a.kind {
	case actSigmoid, actTanh:
		return 16 // an exponential
	case actNone:
		return 0
	}
	return 1
}

// A denseStep is a Gemm or a MatMul by a constant matrix, with a bias and an
// activation after it:
//
//	y = act(alpha · x·w + bias)
//
// x has rows×k elements for each row of the batch (a MatMul of a tensor of
// rank 3 or more multiplies each of its matrices), w is stored transposed,
// m×k, and bias has m elements or none.
type denseStep struct {
	in, out int
	k, m    int
	rows    int // rows of x for each row of the batch
	wt      []float32
	alpha   float32
	bias    []float32
	act     activation
}

func (d *denseStep) inputs() []int { return []int{d.in} }
func (d *denseStep) output() int   { return d.out }
func (d *denseStep) cost() int     { return d.rows * d.m * (d.k + d.act.cost()) }

func (d *denseStep) run(v [][]float32, n int) {
	rows := n * d.rows
	x := v[d.in][:rows*d.k]
	y := v[d.out][:rows*d.m]
	matmul(y, x, d.wt, rows, d.k, d.m)
	if d.alpha != 1 {
		for i := range y {
			y[i] *= d.alpha
		}
	}
	if d.bias != nil {
		for r := range rows {
			row := y[r*d.m : (r+1)*d.m]
			for j, b := range d.bias[:len(row)] {
				row[j] += b
			}
		}
	}
	if d.act.kind != actNone {
		d.act.apply(y, y)
	}
}

// A unaryStep applies an activation.
type unaryStep struct {
	in, out, width int
	act            activation
}

func (s *unaryStep) inputs() []int { return []int{s.in} }
func (s *unaryStep) output() int   { return s.out }
func (s *unaryStep) cost() int     { return s.width * s.act.cost() }

func (s *unaryStep) run(v [][]float32, n int) {
	s.act.apply(v[s.out][:n*s.width], v[s.in][:n*s.width])
}

// A copyStep copies a value: the input, to the output.
type copyStep struct{ in, out int }

func (s *copyStep) inputs() []int { return []int{s.in} }
func (s *copyStep) output() int   { return s.out }
func (s *copyStep) cost() int     { return 1 }

func (s *copyStep) run(v [][]float32, n int) { copy(v[s.out], v[s.in]) }

// A binOp is Add, Sub or Mul.
type binOp uint8

const (
	opAdd binOp = iota
	opSub
	opMul
)

// How an operand's row meets the row of the result.
const (
	same   = iota // element for element
	scalar        // its one element against each
	gather        // through index
)

// An operand of a binaryStep: a slot, or a constant that each row meets.
type operand struct {
	slot  int // -1 for a constant
	konst []float32
	width int // elements of a row
	mode  uint8
	index []int32 // gather: the operand's element for each of the result's
}

func (p *operand) row(v [][]float32, r int) []float32 {
	if p.slot < 0 {
		return p.konst
	}
	return v[p.slot][r*p.width : (r+1)*p.width]
}

// A binaryStep is Add, Sub or Mul, with numpy's broadcasting.
type binaryStep struct {
	op         binOp
	a, b       operand
	out, width int
}

func (s *binaryStep) inputs() []int {
	var in []int
	for _, p := range []operand{s.a, s.b} {
		if p.slot >= 0 {
			in = append(in, p.slot)
		}
	}
	return in
}
func (s *binaryStep) output() int { return s.out }
func (s *binaryStep) cost() int   { return s.width }

func (s *binaryStep) run(v [][]float32, n int) {
	out := v[s.out]
	for r := range n {
		o := out[r*s.width : (r+1)*s.width]
		a, b := s.a.row(v, r), s.b.row(v, r)
		switch {
		case s.a.mode == same && s.b.mode == same:
			s.op.same(o, a[:len(o)], b[:len(o)])
		case s.a.mode == same && s.b.mode == scalar:
			s.op.scalarRight(o, a[:len(o)], b[0])
		case s.a.mode == scalar && s.b.mode == same:
			s.op.scalarLeft(o, a[0], b[:len(o)])
		default:
			s.op.gather(o, a, b, s.a.index, s.b.index)
		}
	}
}

func (op binOp) same(o, a, b []float32) {
	switch op {
	case opAdd:
		for i := range o {
			o[i] = a[i] + b[i]
		}
	case opSub:
		for i := range o {
			o[i] = a[i] - b[i]
		}
	case opMul:
		for i := range o {
			o[i] = a[i] * b[i]
		}
	}
}

func (op binOp) scalarRight(o, a []float32, b float32) {
	switch op {
	case opAdd:
		for i := range o {
			o[i] = a[i] + b
		}
	case opSub:
		for i := range o {
			o[i] = a[i] - b
		}
	case opMul:
		for i := range o {
			o[i] = a[i] * b
		}
	}
}

func (op binOp) scalarLeft(o []float32, a float32, b []float32) {
	switch op {
	case opAdd:
		for i := range o {
			o[i] = a + b[i]
		}
	case opSub:
		for i := range o {
			o[i] = a - b[i]
		}
	case opMul:
		for i := range o {
			o[i] = a * b[i]
		}
	}
}

// gather combines a[ia[i]] and b[ib[i]] into o[i].
func (op binOp) gather(o, a, b []float32, ia, ib []int32) {
	ia, ib = ia[:len(o)], ib[:len(o)]
	switch op {
	case opAdd:
		for i := range o {
			o[i] = a[ia[i]] + b[ib[i]]
		}
	case opSub:
		for i := range o {
			o[i] = a[ia[i]] - b[ib[i]]
		}
	case opMul:
		for i := range o {
			o[i] = a[ia[i]] * b[ib[i]]
		}
	}
}

// An affineStep is a BatchNormalization in inference mode: element j of a
// row, in channel c = j / (width/channels), becomes
//
//	(x - mean[c]) · scale[c] + shift[c]
//
// where scale is the layer's scale / sqrt(var + epsilon) and shift its B.
type affineStep struct {
	in, out, width     int
	channels           int
	mean, scale, shift []float32
}

func (s *affineStep) inputs() []int { return []int{s.in} }
func (s *affineStep) output() int   { return s.out }
func (s *affineStep) cost() int     { return s.width }

func (s *affineStep) run(v [][]float32, n int) {
	in, out := v[s.in][:n*s.width], v[s.out][:n*s.width]
	spatial := s.width / s.channels
	for r := range n {
		x, y := in[r*s.width:(r+1)*s.width], out[r*s.width:(r+1)*s.width]
		for c := range s.channels {
			mean, scale, shift := s.mean[c], s.scale[c], s.shift[c]
			xs, ys := x[c*spatial:(c+1)*spatial], y[c*spatial:(c+1)*spatial]
			for i, v := range xs {
				ys[i] = (v-mean)*scale + shift
			}
		}
	}
}

// A softmaxStep is a Softmax: a row holds outer blocks, each of n groups of
// inner elements, and the softmax runs over the n elements at the same place
// of each group.
type softmaxStep struct {
	in, out, width  int
	outer, n, inner int
}

func (s *softmaxStep) inputs() []int { return []int{s.in} }
func (s *softmaxStep) output() int   { return s.out }
func (s *softmaxStep) cost() int     { return s.width * 16 }

func (s *softmaxStep) run(v [][]float32, n int) {
	in, out := v[s.in][:n*s.width], v[s.out][:n*s.width]
	stride := s.n * s.inner
	for base := 0; base < len(in); base += stride {
		for i := range s.inner {
			x, y := in[base+i:base+stride], out[base+i:base+stride]
			// Exponents relative to the largest element, summed in double.
			top := x[0]
			for t := s.inner; t < len(x); t += s.inner {
				top = max(top, x[t])
			}
			sum := 0.0
			for t := 0; t < len(x); t += s.inner {
				e := math.Exp(float64(x[t]) - float64(top))
				y[t] = float32(e)
				sum += e
			}
			for t := 0; t < len(x); t += s.inner {
				y[t] = float32(float64(y[t]) / sum)
			}
		}
	}
}

// A concatStep is a Concat: a row is outer blocks, each made of a block of
// each input, blocks[i] elements of input i.
type concatStep struct {
	ins        []int
	blocks     []int
	outer      int
	out, width int
}

func (s *concatStep) inputs() []int { return s.ins }
func (s *concatStep) output() int   { return s.out }
func (s *concatStep) cost() int     { return s.width }

func (s *concatStep) run(v [][]float32, n int) {
	out := v[s.out]
	at := 0
	for r := range n {
		for o := range s.outer {
			for i, in := range s.ins {
				b := s.blocks[i]
				src := v[in][(r*s.outer+o)*b : (r*s.outer+o+1)*b]
				at += copy(out[at:], src)
			}
		}
	}
}
