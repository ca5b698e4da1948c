package onnx

import (
	"errors"
	"fmt"

	"github.com/quiver-ml/quiver/internal/cuda"
)

// GPUOptions configures a model's copy on a GPU; zero fields take their
// defaults.
type GPUOptions struct {
	// TF32 lets the dense layers round their inputs to TF32 (10 bits of
	// mantissa) on the tensor cores: several times the speed of float32 on
	// large layers, with relative errors near 1e-3 instead of 1e-6.
	TF32 bool
	// MaxRows bounds the rows the GPU evaluates at once: a larger batch is
	// evaluated in parts. Default 16,384, less where a lane's memory would
	// pass 1 GiB.
	MaxRows int
	// Lanes is how many batches may be on the GPU at once, each with its
	// own stream, cuBLAS handle and memory, so that one's copies overlap
	// another's computing. Default 2.
	Lanes int
}

const (
	defaultGPURows  = 16 << 10
	defaultLanes    = 2
	laneBudgetBytes = 1 << 30
	threadsPerBlock = 256
)

// A GPUModel is a Model's copy on a GPU: its weights and constants on the
// device, each dense layer a cuBLAS SGEMM, the other steps kernels compiled
// for the device at load. Batches are copied through pinned host memory on
// the lanes' streams. It is safe for concurrent use, Lanes batches at a
// time; Close frees it, once no Predict is running, and none may start
// after.
type GPUModel struct {
	m       *Model
	dev     *cuda.Device
	mod     *cuda.Module
	k       gpuKernels
	consts  []cuda.Buffer
	steps   []gpuStep
	maxRows int
	grid    int // blocks for a kernel over many elements
	lanes   chan *lane
	all     []*lane
}

type gpuKernels struct{ apply, binary, affine, softmax, place *cuda.Kernel }

// A gpuStep queues a step's work for n rows on a lane.
type gpuStep func(l *lane, n int) error

// A lane is the memory and stream of a batch on the GPU.
type lane struct {
	stream          *cuda.Stream
	blas            *cuda.BLAS
	arena, in, out  cuda.Buffer // scratch (as the CPU's, maxRows rows), input, output
	hostIn, hostOut []float32   // pinned
}

// kernelSource is the CUDA C of the steps other than dense layers; each
// kernel loops over its elements with the grid's stride. The arithmetic is
// the CPU's: float32, exponentials in double, no fused multiply-adds
// (--fmad=false).
var kernelSource = fmt.Sprintf(`
typedef long long i64;
#define EACH(i, n) for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

__device__ __forceinline__ float activate(float v, int kind, float alpha) {
	switch (kind) {
	case %d: return v < 0.0f ? 0.0f : v;
	case %d: return v < 0.0f ? v * alpha : v;
	case %d: return (float)(1.0 / (1.0 + exp(-(double)v)));
	case %d: return (float)tanh((double)v);
	}
	return v;
}

// out = activate(in + bias[column]); bias may be null, out may be in.
extern "C" __global__ void apply(float* out, const float* in, const float* bias, i64 n, int width, int kind, float alpha) {
	EACH(i, n) {
		float v = in[i];
		if (bias) v += bias[i %% width];
		out[i] = activate(v, kind, alpha);
	}
}

// Add, Sub or Mul of two operands, each a row of a value (stride its
// width) or a constant (stride 0), met element for element, as a scalar or
// through an index.
__device__ __forceinline__ float operand(const float* p, int stride, int mode, const int* index, i64 r, int j) {
	return p[r * stride + (mode == %d ? j : mode == %d ? 0 : index[j])];
}
extern "C" __global__ void binary(float* out, i64 n, int width, int op,
		const float* a, int aStride, int aMode, const int* aIndex,
		const float* b, int bStride, int bMode, const int* bIndex) {
	EACH(i, n) {
		i64 r = i / width;
		int j = (int)(i - r * width);
		float x = operand(a, aStride, aMode, aIndex, r, j), y = operand(b, bStride, bMode, bIndex, r, j);
		out[i] = op == %d ? x + y : op == %d ? x - y : x * y;
	}
}

// BatchNormalization: channel c of a row is elements [c*spatial, (c+1)*spatial).
extern "C" __global__ void affine(float* out, const float* in, i64 n, int width, int spatial,
		const float* mean, const float* scale, const float* shift) {
	EACH(i, n) {
		int c = (int)(i %% width) / spatial;
		out[i] = (in[i] - mean[c]) * scale[c] + shift[c];
	}
}

// Softmax over groups of size elements, inner apart.
extern "C" __global__ void softmax(float* out, const float* in, i64 groups, int size, int inner) {
	EACH(g, groups) {
		i64 base = (g / inner) * size * inner + g %% inner;
		float top = in[base];
		for (int t = 1; t < size; t++) top = fmaxf(top, in[base + (i64)t * inner]);
		double sum = 0;
		for (int t = 0; t < size; t++) {
			double e = exp((double)in[base + (i64)t * inner] - (double)top);
			out[base + (i64)t * inner] = (float)e;
			sum += e;
		}
		for (int t = 0; t < size; t++) out[base + (i64)t * inner] = (float)((double)out[base + (i64)t * inner] / sum);
	}
}

// Concat: block i of in (block elements) goes to out at i*outBlock + at.
extern "C" __global__ void place(float* out, const float* in, i64 n, int block, int outBlock, int at) {
	EACH(i, n) {
		i64 b = i / block;
		out[b * outBlock + at + (i - b * block)] = in[i];
	}
}
`, actRelu, actLeaky, actSigmoid, actTanh, same, scalar, opAdd, opSub)

// OnGPU copies the model to the device, compiles its kernels there and
// allocates its lanes.
func (m *Model) OnGPU(dev *cuda.Device, o GPUOptions) (*GPUModel, error) {
	g := &GPUModel{m: m, dev: dev, grid: max(1, dev.Multiprocessors*8)}
	if o.Lanes <= 0 {
		o.Lanes = defaultLanes
	}
	perRow := 4 * (m.rowWidth + m.numFeatures + m.numOutputs)
	g.maxRows = max(1, min(defaultGPURows, laneBudgetBytes/perRow))
	if o.MaxRows > 0 {
		g.maxRows = o.MaxRows
	}
	err := dev.Do(func() error {
		var err error
		if g.mod, err = dev.Compile("quiver_onnx.cu", kernelSource, "--fmad=false"); err != nil {
			return err
		}
		for _, k := range []struct {
			k    **cuda.Kernel
			name string
		}{{&g.k.apply, "apply"}, {&g.k.binary, "binary"}, {&g.k.affine, "affine"}, {&g.k.softmax, "softmax"}, {&g.k.place, "place"}} {
			if *k.k, err = g.mod.Kernel(k.name); err != nil {
				return err
			}
		}
		for _, s := range m.steps {
			gs, err := g.step(s)
			if err != nil {
				return err
			}
			g.steps = append(g.steps, gs)
		}
		g.lanes = make(chan *lane, o.Lanes)
		for range o.Lanes {
			l, err := g.newLane(o.TF32)
			if err != nil {
				return err
			}
			g.lanes <- l
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("onnx: on the GPU: %w", err), g.free())
	}
	return g, nil
}

// newLane allocates a lane, listed in g.all as soon as it has a stream, so
// that free frees what it holds even if it is not whole.
func (g *GPUModel) newLane(tf32 bool) (*lane, error) {
	m, d, rows := g.m, g.dev, g.maxRows
	l := &lane{}
	var err error
	if l.stream, err = d.NewStream(); err != nil {
		return nil, err
	}
	g.all = append(g.all, l)
	if l.blas, err = l.stream.NewBLAS(tf32); err != nil {
		return nil, err
	}
	if l.arena, err = d.Alloc(4 * rows * m.rowWidth); err != nil {
		return nil, err
	}
	if l.in, err = d.Alloc(4 * rows * m.numFeatures); err != nil {
		return nil, err
	}
	if l.out, err = d.Alloc(4 * rows * m.numOutputs); err != nil {
		return nil, err
	}
	if l.hostIn, err = d.HostAlloc(rows * m.numFeatures); err != nil {
		return nil, err
	}
	if l.hostOut, err = d.HostAlloc(rows * m.numOutputs); err != nil {
		return nil, err
	}
	return l, nil
}

// DeviceBytes is the device memory the model holds: its constants, and
// each lane's scratch, input and output.
func (g *GPUModel) DeviceBytes() int {
	n := 0
	for _, b := range g.consts {
		n += b.Bytes
	}
	for _, l := range g.all {
		n += l.arena.Bytes + l.in.Bytes + l.out.Bytes
	}
	return n
}

// Lanes is how many batches may be on the GPU at once.
func (g *GPUModel) Lanes() int { return len(g.all) }

// NumFeatures is the elements of an input row, as the CPU model's.
func (g *GPUModel) NumFeatures() int { return g.m.numFeatures }

// NumOutputs is the elements of an output row, as the CPU model's.
func (g *GPUModel) NumOutputs() int { return g.m.numOutputs }

// Predict evaluates rows rows on the GPU, as Model.Predict does on the
// CPU: x row-major, NumFeatures values each, into out, NumOutputs each. It
// waits for a free lane. An error is the device's: a failed copy, launch
// or SGEMM.
func (g *GPUModel) Predict(x []float32, rows int, out []float32) error {
	nf, no := g.m.numFeatures, g.m.numOutputs
	if rows < 0 || len(x)/nf < rows || len(out)/no < rows {
		return fmt.Errorf("onnx: Predict of %d rows with %d inputs and %d outputs, want %d × %d and %d × %d", rows, len(x), len(out), rows, nf, rows, no)
	}
	l := <-g.lanes
	defer func() { g.lanes <- l }()
	err := g.dev.Do(func() error {
		for lo := 0; lo < rows; lo += g.maxRows {
			n := min(g.maxRows, rows-lo)
			in, res := l.hostIn[:n*nf], l.hostOut[:n*no]
			copy(in, x[lo*nf:])
			if err := l.stream.ToDevice(l.in.Ptr, in); err != nil {
				return err
			}
			for _, s := range g.steps {
				if err := s(l, n); err != nil {
					return err
				}
			}
			if err := l.stream.ToHost(res, l.out.Ptr); err != nil {
				return err
			}
			if err := l.stream.Sync(); err != nil {
				return err
			}
			copy(out[lo*no:], res)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("onnx: predict on the GPU: %w", err)
	}
	return nil
}

// Close waits for the batches on the GPU and frees the model's memory,
// streams and kernels.
func (g *GPUModel) Close() error {
	for range g.all {
		<-g.lanes
	}
	return g.dev.Do(g.free)
}

func (g *GPUModel) free() error {
	var errs []error
	for _, l := range g.all {
		if l.blas != nil {
			errs = append(errs, l.blas.Close())
		}
		errs = append(errs, g.dev.Free(l.arena), g.dev.Free(l.in), g.dev.Free(l.out), g.dev.HostFree(l.hostIn), g.dev.HostFree(l.hostOut), l.stream.Close())
	}
	for _, b := range g.consts {
		errs = append(errs, g.dev.Free(b))
	}
	if g.mod != nil {
		errs = append(errs, g.mod.Close())
	}
	g.all, g.consts, g.mod = nil, nil, nil
	return errors.Join(errs...)
}

// slot is where slot s's values of n rows lie on lane l: the CPU's layout.
func (g *GPUModel) slot(l *lane, s, n int) uintptr {
	switch b := g.m.slots[s].buf; b {
	case bufInput:
		return l.in.Ptr
	case bufOutput:
		return l.out.Ptr
	case bufNone:
		return 0
	default:
		return l.arena.Ptr + uintptr(4*n*g.m.bufs[b].off)
	}
}

// upload copies constants to the device, for the model's life; nil is a
// null pointer.
func upload[T float32 | int32](g *GPUModel, v []T) (uintptr, error) {
	if v == nil {
		return 0, nil
	}
	b, err := cuda.Upload(g.dev, v)
	if err != nil {
		return 0, err
	}
	g.consts = append(g.consts, b)
	return b.Ptr, nil
}

// launch queues k over n elements.
func (g *GPUModel) launch(k *cuda.Kernel, l *lane, n int, args ...any) error {
	if n == 0 {
		return nil
	}
	return k.Launch(l.stream, min(g.grid, (n+threadsPerBlock-1)/threadsPerBlock), threadsPerBlock, args...)
}

// step turns a step into its GPU form, uploading its constants.
func (g *GPUModel) step(st step) (gpuStep, error) {
	switch s := st.(type) {
	case *denseStep:
		w, err := upload(g, s.wt)
		if err != nil {
			return nil, err
		}
		bias, err := upload(g, s.bias)
		if err != nil {
			return nil, err
		}
		return func(l *lane, n int) error {
			rows := n * s.rows
			y := g.slot(l, s.out, n)
			if err := l.blas.MulRows(y, g.slot(l, s.in, n), w, rows, s.k, s.m, s.alpha); err != nil {
				return err
			}
			if bias == 0 && s.act.kind == actNone {
				return nil
			}
			return g.launch(g.k.apply, l, rows*s.m, y, y, bias, int64(rows*s.m), int32(s.m), int32(s.act.kind), s.act.alpha)
		}, nil
	case *unaryStep:
		return func(l *lane, n int) error {
			return g.launch(g.k.apply, l, n*s.width, g.slot(l, s.out, n), g.slot(l, s.in, n), uintptr(0), int64(n*s.width), int32(s.width), int32(s.act.kind), s.act.alpha)
		}, nil
	case *copyStep:
		width := g.m.slots[s.in].width
		return func(l *lane, n int) error {
			return l.stream.Copy(g.slot(l, s.out, n), g.slot(l, s.in, n), n*width)
		}, nil
	case *binaryStep:
		type gpuOperand struct {
			konst, index uintptr
			stride       int32
		}
		var ops [2]gpuOperand
		for i, p := range []operand{s.a, s.b} {
			var err error
			if p.slot < 0 {
				if ops[i].konst, err = upload(g, p.konst); err != nil {
					return nil, err
				}
			} else {
				ops[i].stride = int32(p.width)
			}
			if ops[i].index, err = upload(g, p.index); err != nil {
				return nil, err
			}
		}
		at := func(l *lane, p operand, o gpuOperand, n int) uintptr {
			if p.slot < 0 {
				return o.konst
			}
			return g.slot(l, p.slot, n)
		}
		return func(l *lane, n int) error {
			a, b := at(l, s.a, ops[0], n), at(l, s.b, ops[1], n)
			return g.launch(g.k.binary, l, n*s.width, g.slot(l, s.out, n), int64(n*s.width), int32(s.width), int32(s.op),
				a, ops[0].stride, int32(s.a.mode), ops[0].index, b, ops[1].stride, int32(s.b.mode), ops[1].index)
		}, nil
	case *affineStep:
		var c [3]uintptr
		for i, v := range [][]float32{s.mean, s.scale, s.shift} {
			var err error
			if c[i], err = upload(g, v); err != nil {
				return nil, err
			}
		}
		return func(l *lane, n int) error {
			return g.launch(g.k.affine, l, n*s.width, g.slot(l, s.out, n), g.slot(l, s.in, n), int64(n*s.width), int32(s.width), int32(s.width/s.channels), c[0], c[1], c[2])
		}, nil
	case *softmaxStep:
		return func(l *lane, n int) error {
			groups := n * s.outer * s.inner
			return g.launch(g.k.softmax, l, groups, g.slot(l, s.out, n), g.slot(l, s.in, n), int64(groups), int32(s.n), int32(s.inner))
		}, nil
	case *concatStep:
		return func(l *lane, n int) error {
			out, at := g.slot(l, s.out, n), 0
			for i, in := range s.ins {
				b := s.blocks[i]
				if err := g.launch(g.k.place, l, n*s.outer*b, out, g.slot(l, in, n), int64(n*s.outer*b), int32(b), int32(s.width/s.outer), int32(at)); err != nil {
					return err
				}
				at += b
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("no GPU form of step %T", st)
}
