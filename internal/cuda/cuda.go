package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// ErrUnavailable is returned by Open where there is no GPU to use: no CUDA
// libraries, no device, or a build without GPU support.
var ErrUnavailable = errors.New("cuda: no GPU available")

// An Error is a CUDA call that failed.
type Error struct {
	Call string // the function, such as cudaMalloc
	Code int    // its status
	Text string // the library's description of the status
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s (%d)", e.Call, e.Text, e.Code) }

// api holds the functions of the libraries, set by load.
type api struct {
	libs string // what was loaded, for logs

	// The driver.
	cuInit                   func(flags uint32) int32
	cuDriverGetVersion       func(v *int32) int32
	cuDeviceGetCount         func(n *int32) int32
	cuDeviceGet              func(dev *int32, ordinal int32) int32
	cuDeviceGetName          func(name *byte, size int32, dev int32) int32
	cuDeviceGetAttribute     func(v *int32, attr int32, dev int32) int32
	cuDevicePrimaryCtxRetain func(ctx *uintptr, dev int32) int32
	cuCtxSetCurrent          func(ctx uintptr) int32
	cuModuleLoadData         func(mod *uintptr, image *byte) int32
	cuModuleGetFunction      func(fn *uintptr, mod uintptr, name string) int32
	cuModuleUnload           func(mod uintptr) int32
	cuLaunchKernel           func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params *unsafe.Pointer, extra uintptr) int32
	cuGetErrorString         func(status int32, text **byte) int32

	// The runtime.
	cudaRuntimeGetVersion     func(v *int32) int32
	cudaMalloc                func(p *uintptr, size uintptr) int32
	cudaFree                  func(p uintptr) int32
	cudaMallocHost            func(p *unsafe.Pointer, size uintptr) int32
	cudaFreeHost              func(p unsafe.Pointer) int32
	cudaMemcpyAsync           func(dst, src, size uintptr, kind int32, stream uintptr) int32
	cudaMemGetInfo            func(free, total *uintptr) int32
	cudaStreamCreateWithFlags func(s *uintptr, flags uint32) int32
	cudaStreamSynchronize     func(s uintptr) int32
	cudaStreamDestroy         func(s uintptr) int32
	cudaGetErrorString        func(status int32) string

	// cuBLAS.
	cublasCreate      func(h *uintptr) int32
	cublasDestroy     func(h uintptr) int32
	cublasSetStream   func(h, s uintptr) int32
	cublasSetMathMode func(h uintptr, mode int32) int32
	cublasSgemm       func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uintptr, lda int32, b uintptr, ldb int32, beta *float32, c uintptr, ldc int32) int32

	// NVRTC.
	nvrtcVersion           func(major, minor *int32) int32
	nvrtcCreateProgram     func(prog *uintptr, src, name string, headers int32, sources, names uintptr) int32
	nvrtcCompileProgram    func(prog uintptr, n int32, options **byte) int32
	nvrtcGetCUBINSize      func(prog uintptr, size *uintptr) int32
	nvrtcGetCUBIN          func(prog uintptr, cubin *byte) int32
	nvrtcGetProgramLogSize func(prog uintptr, size *uintptr) int32
	nvrtcGetProgramLog     func(prog uintptr, log *byte) int32
	nvrtcDestroyProgram    func(prog *uintptr) int32
	nvrtcGetErrorString    func(status int32) string
}

var (
	loadOnce sync.Once
	lib      *api
	loadErr  error
)

// libraries loads the CUDA libraries once for the process.
func libraries() (*api, error) {
	loadOnce.Do(func() { lib, loadErr = load() })
	return lib, loadErr
}

func (a *api) driver(call string, status int32) error {
	if status == 0 {
		return nil
	}
	text := "unknown error"
	var p *byte
	if a.cuGetErrorString(status, &p) == 0 && p != nil {
		text = cString(p)
	}
	return &Error{Call: call, Code: int(status), Text: text}
}

func (a *api) runtime(call string, status int32) error {
	if status == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(status), Text: a.cudaGetErrorString(status)}
}

func (a *api) blas(call string, status int32) error {
	if status == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(status), Text: blasStatus[status]}
}

func (a *api) nvrtc(call string, status int32) error {
	if status == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(status), Text: a.nvrtcGetErrorString(status)}
}

// blasStatus names cuBLAS's statuses, which it has no function to describe.
var blasStatus = map[int32]string{
	1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
	8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cString copies the NUL-terminated string at p.
func cString(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// Driver attributes of a device (CUdevice_attribute).
const (
	attrMultiprocessors = 16
	attrMajor           = 75
	attrMinor           = 76
)

// A Device is a GPU with its primary context.
type Device struct {
	api             *api
	ordinal         int32
	ctx             uintptr
	Name            string // such as NVIDIA H100 80GB HBM3
	Arch            string // the NVRTC architecture: sm_90
	Multiprocessors int
	Versions        string // the driver's, runtime's and NVRTC's CUDA versions, and the libraries
}

// Open opens the GPU of the given ordinal (0 for the first one
// CUDA_VISIBLE_DEVICES lets the process see). An error matches
// ErrUnavailable where the libraries or the device are missing.
func Open(ordinal int) (*Device, error) {
	a, err := libraries()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := a.driver("cuInit", a.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var count int32
	if err := a.driver("cuDeviceGetCount", a.cuDeviceGetCount(&count)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if ordinal < 0 || int(count) <= ordinal {
		return nil, fmt.Errorf("%w: device %d asked for, %d seen", ErrUnavailable, ordinal, count)
	}
	d := &Device{api: a}
	if err := a.driver("cuDeviceGet", a.cuDeviceGet(&d.ordinal, int32(ordinal))); err != nil {
		return nil, err
	}
	var name [256]byte
	if err := a.driver("cuDeviceGetName", a.cuDeviceGetName(&name[0], int32(len(name)), d.ordinal)); err != nil {
		return nil, err
	}
	d.Name = cString(&name[0])
	var major, minor, sms int32
	for _, q := range []struct {
		v    *int32
		attr int32
	}{{&major, attrMajor}, {&minor, attrMinor}, {&sms, attrMultiprocessors}} {
		if err := a.driver("cuDeviceGetAttribute", a.cuDeviceGetAttribute(q.v, q.attr, d.ordinal)); err != nil {
			return nil, err
		}
	}
	d.Arch = fmt.Sprintf("sm_%d%d", major, minor)
	d.Multiprocessors = int(sms)
	if err := a.driver("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain(&d.ctx, d.ordinal)); err != nil {
		return nil, err
	}
	var drv, rt, nvMajor, nvMinor int32
	if err := a.driver("cuDriverGetVersion", a.cuDriverGetVersion(&drv)); err != nil {
		return nil, err
	}
	err = d.Do(func() error { return a.runtime("cudaRuntimeGetVersion", a.cudaRuntimeGetVersion(&rt)) })
	if err != nil {
		return nil, err
	}
	if err := a.nvrtc("nvrtcVersion", a.nvrtcVersion(&nvMajor, &nvMinor)); err != nil {
		return nil, err
	}
	d.Versions = fmt.Sprintf("driver %s, runtime %s, nvrtc %d.%d (%s)", version(drv), version(rt), nvMajor, nvMinor, a.libs)
	return d, nil
}

// version writes a CUDA version number, 1000·major + 10·minor.
func version(v int32) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// Do runs f on the calling goroutine's OS thread, locked to it, with the
// device's context current: every call of this package is made inside it.
func (d *Device) Do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.api.driver("cuCtxSetCurrent", d.api.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	return f()
}

// Memory returns the device's free and total memory, in bytes.
func (d *Device) Memory() (free, total int, err error) {
	var f, t uintptr
	if err := d.api.runtime("cudaMemGetInfo", d.api.cudaMemGetInfo(&f, &t)); err != nil {
		return 0, 0, err
	}
	return int(f), int(t), nil
}

// A Buffer is device memory.
type Buffer struct {
	Ptr   uintptr
	Bytes int
}

// Alloc allocates device memory.
func (d *Device) Alloc(bytes int) (Buffer, error) {
	var p uintptr
	if err := d.api.runtime("cudaMalloc", d.api.cudaMalloc(&p, uintptr(max(bytes, 1)))); err != nil {
		return Buffer{}, fmt.Errorf("allocate %d bytes on the GPU: %w", bytes, err)
	}
	return Buffer{Ptr: p, Bytes: bytes}, nil
}

// Free frees device memory from Alloc; a zero Buffer is none.
func (d *Device) Free(b Buffer) error {
	if b.Ptr == 0 {
		return nil
	}
	return d.api.runtime("cudaFree", d.api.cudaFree(b.Ptr))
}

// Upload allocates device memory for v and copies it there.
func Upload[T float32 | int32](d *Device, v []T) (Buffer, error) {
	bytes := len(v) * 4
	b, err := d.Alloc(bytes)
	if err != nil || bytes == 0 {
		return b, err
	}
	// A synchronous copy from pageable memory: the default stream.
	err = d.api.runtime("cudaMemcpyAsync", d.api.cudaMemcpyAsync(b.Ptr, uintptr(unsafe.Pointer(&v[0])), uintptr(bytes), memcpyHostToDevice, 0))
	if err == nil {
		err = d.api.runtime("cudaStreamSynchronize", d.api.cudaStreamSynchronize(0))
	}
	runtime.KeepAlive(v)
	if err != nil {
		return Buffer{}, errors.Join(err, d.Free(b))
	}
	return b, nil
}

// HostAlloc allocates n float32s of pinned (page-locked) host memory, which
// the GPU copies from and to without staging.
func (d *Device) HostAlloc(n int) ([]float32, error) {
	var p unsafe.Pointer
	if err := d.api.runtime("cudaMallocHost", d.api.cudaMallocHost(&p, uintptr(max(n, 1)*4))); err != nil {
		return nil, fmt.Errorf("allocate %d bytes of pinned host memory: %w", n*4, err)
	}
	return unsafe.Slice((*float32)(p), n), nil
}

// HostFree frees memory from HostAlloc.
func (d *Device) HostFree(h []float32) error {
	if cap(h) == 0 {
		return nil
	}
	return d.api.runtime("cudaFreeHost", d.api.cudaFreeHost(unsafe.Pointer(unsafe.SliceData(h))))
}

// cudaMemcpyKind.
const (
	memcpyHostToDevice   = 1
	memcpyDeviceToHost   = 2
	memcpyDeviceToDevice = 3
)

// A Stream is a CUDA stream: work queued on it runs in order.
type Stream struct {
	d *Device
	s uintptr
}

// NewStream creates a stream that does not wait for the default one.
func (d *Device) NewStream() (*Stream, error) {
	s := &Stream{d: d}
	const nonBlocking = 1
	if err := d.api.runtime("cudaStreamCreateWithFlags", d.api.cudaStreamCreateWithFlags(&s.s, nonBlocking)); err != nil {
		return nil, err
	}
	return s, nil
}

// ToDevice queues a copy of len(src) values from pinned host memory to
// dst.
func (s *Stream) ToDevice(dst uintptr, src []float32) error {
	if len(src) == 0 {
		return nil
	}
	return s.d.api.runtime("cudaMemcpyAsync", s.d.api.cudaMemcpyAsync(dst, uintptr(unsafe.Pointer(&src[0])), uintptr(len(src)*4), memcpyHostToDevice, s.s))
}

// ToHost queues a copy of len(dst) values from src to pinned host memory.
func (s *Stream) ToHost(dst []float32, src uintptr) error {
	if len(dst) == 0 {
		return nil
	}
	return s.d.api.runtime("cudaMemcpyAsync", s.d.api.cudaMemcpyAsync(uintptr(unsafe.Pointer(&dst[0])), src, uintptr(len(dst)*4), memcpyDeviceToHost, s.s))
}

// Copy queues a copy of n values from src to dst, both on the device.
func (s *Stream) Copy(dst, src uintptr, n int) error {
	if n == 0 {
		return nil
	}
	return s.d.api.runtime("cudaMemcpyAsync", s.d.api.cudaMemcpyAsync(dst, src, uintptr(n*4), memcpyDeviceToDevice, s.s))
}

// Sync waits for the work queued on the stream, and returns the error of
// any of it that failed.
func (s *Stream) Sync() error {
	return s.d.api.runtime("cudaStreamSynchronize", s.d.api.cudaStreamSynchronize(s.s))
}

// Close destroys the stream once its work is done.
func (s *Stream) Close() error {
	return s.d.api.runtime("cudaStreamDestroy", s.d.api.cudaStreamDestroy(s.s))
}

// BLAS is a cuBLAS handle, bound to a stream.
type BLAS struct {
	d *Device
	h uintptr
}

// cublasMath_t.
const (
	mathDefault = 0 // full float32: no tensor cores for SGEMM
	mathTF32    = 3 // SGEMM on tensor cores, inputs rounded to TF32
)

// NewBLAS creates a cuBLAS handle whose work goes on s; tf32 lets its
// SGEMMs round their inputs to TF32 (10 bits of mantissa) on the tensor
// cores.
func (s *Stream) NewBLAS(tf32 bool) (*BLAS, error) {
	a := s.d.api
	b := &BLAS{d: s.d}
	if err := a.blas("cublasCreate", a.cublasCreate(&b.h)); err != nil {
		return nil, err
	}
	mode := int32(mathDefault)
	if tf32 {
		mode = mathTF32
	}
	err := errors.Join(a.blas("cublasSetStream", a.cublasSetStream(b.h, s.s)), a.blas("cublasSetMathMode", a.cublasSetMathMode(b.h, mode)))
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

// MulRows queues y = alpha · x · wᵀ for row-major matrices: x is rows×k,
// w is m×k (a row per output), y is rows×m.
func (b *BLAS) MulRows(y, x, w uintptr, rows, k, m int, alpha float32) error {
	// In cuBLAS's column-major terms, y is yᵀ (m×rows) = w (stored as
	// k×m, transposed) · xᵀ (k×rows).
	const opN, opT = 0, 1
	beta := float32(0)
	return b.d.api.blas("cublasSgemm", b.d.api.cublasSgemm(b.h, opT, opN, int32(m), int32(rows), int32(k), &alpha, w, int32(k), x, int32(k), &beta, y, int32(m)))
}

// Close destroys the handle.
func (b *BLAS) Close() error {
	return b.d.api.blas("cublasDestroy", b.d.api.cublasDestroy(b.h))
}

// A Module is device code: kernels compiled from CUDA C.
type Module struct {
	d   *Device
	mod uintptr
}

// Compile compiles CUDA C source for the device with NVRTC, with NVRTC's
// options opts, and loads it. The source declares its kernels extern "C",
// so that they keep their names.
func (d *Device) Compile(name, src string, opts ...string) (*Module, error) {
	a := d.api
	var prog uintptr
	if err := a.nvrtc("nvrtcCreateProgram", a.nvrtcCreateProgram(&prog, src, name, 0, 0, 0)); err != nil {
		return nil, err
	}
	defer a.nvrtcDestroyProgram(&prog)
	opts = append([]string{"--gpu-architecture=" + d.Arch}, opts...)
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		b := append([]byte(o), 0)
		ptrs[i] = &b[0]
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	for _, p := range ptrs {
		pin.Pin(p)
	}
	if status := a.nvrtcCompileProgram(prog, int32(len(ptrs)), &ptrs[0]); status != 0 {
		var size uintptr
		log := ""
		if a.nvrtcGetProgramLogSize(prog, &size) == 0 && size > 1 {
			b := make([]byte, size)
			if a.nvrtcGetProgramLog(prog, &b[0]) == 0 {
				log = ": " + string(b[:size-1])
			}
		}
		return nil, fmt.Errorf("compile %s for %s: %w%s", name, d.Arch, a.nvrtc("nvrtcCompileProgram", status), log)
	}
	var size uintptr
	if err := a.nvrtc("nvrtcGetCUBINSize", a.nvrtcGetCUBINSize(prog, &size)); err != nil {
		return nil, err
	}
	cubin := make([]byte, size)
	if err := a.nvrtc("nvrtcGetCUBIN", a.nvrtcGetCUBIN(prog, &cubin[0])); err != nil {
		return nil, err
	}
	m := &Module{d: d}
	if err := a.driver("cuModuleLoadData", a.cuModuleLoadData(&m.mod, &cubin[0])); err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	return m, nil
}

// Kernel finds a kernel of the module by name.
func (m *Module) Kernel(name string) (*Kernel, error) {
	k := &Kernel{d: m.d}
	if err := m.d.api.driver("cuModuleGetFunction", m.d.api.cuModuleGetFunction(&k.fn, m.mod, name)); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	return k, nil
}

// Close unloads the module.
func (m *Module) Close() error {
	return m.d.api.driver("cuModuleUnload", m.d.api.cuModuleUnload(m.mod))
}

// A Kernel is a function of a Module.
type Kernel struct {
	d  *Device
	fn uintptr
}

// maxArgs bounds a kernel's arguments.
const maxArgs = 16

// Launch queues the kernel on s over grid blocks of block threads. Each
// argument is a uintptr (a device pointer), an int32, an int64 or a
// float32, of the type the kernel declares.
func (k *Kernel) Launch(s *Stream, grid, block int, args ...any) error {
	if len(args) > maxArgs {
		return fmt.Errorf("launch: %d arguments, at most %d", len(args), maxArgs)
	}
	// The driver reads each argument through a pointer, as many bytes as
	// the kernel's parameter has: little-endian, the low ones of a slot.
	vals := new([maxArgs]uint64)
	ptrs := new([maxArgs]unsafe.Pointer)
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(vals)
	for i, a := range args {
		switch v := a.(type) {
		case uintptr:
			vals[i] = uint64(v)
		case int32:
			vals[i] = uint64(uint32(v))
		case int64:
			vals[i] = uint64(v)
		case float32:
			vals[i] = uint64(math.Float32bits(v))
		default:
			return fmt.Errorf("launch: argument %d is a %T", i, a)
		}
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	return k.d.api.driver("cuLaunchKernel", k.d.api.cuLaunchKernel(k.fn, uint32(grid), 1, 1, uint32(block), 1, 1, 0, s.s, &ptrs[0], 0))
}
