package cuda_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/internal/cuda"
	"github.com/quiver-ml/quiver/internal/cuda/cudatest"
)

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestMulRows checks cuBLAS's product, through pinned memory and a stream,
// against a float64 product, for shapes that are not multiples of anything.
func TestMulRows(t *testing.T) {
	d := cudatest.Device(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		rows, k, m int
		tf32       bool
		tolerance  float64
	}{{1, 1, 1, false, 1e-6}, {3, 17, 5, false, 1e-6}, {257, 300, 129, false, 1e-5}, {257, 300, 129, true, 3e-3}} {
		x, w := randn(rng, c.rows*c.k), randn(rng, c.m*c.k)
		var got []float32
		err := d.Do(func() error {
			s, err := d.NewStream()
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := s.NewBLAS(c.tf32)
			if err != nil {
				return err
			}
			defer b.Close()
			dx, err := cuda.Upload(d, x)
			if err != nil {
				return err
			}
			defer d.Free(dx)
			dw, err := cuda.Upload(d, w)
			if err != nil {
				return err
			}
			defer d.Free(dw)
			dy, err := d.Alloc(4 * c.rows * c.m)
			if err != nil {
				return err
			}
			defer d.Free(dy)
			host, err := d.HostAlloc(c.rows * c.m)
			if err != nil {
				return err
			}
			defer d.HostFree(host)
			for i := range host {
				host[i] = float32(math.NaN()) // poison: every element must be written
			}
			if err := b.MulRows(dy.Ptr, dx.Ptr, dw.Ptr, c.rows, c.k, c.m, 2); err != nil {
				return err
			}
			if err := s.ToHost(host, dy.Ptr); err != nil {
				return err
			}
			if err := s.Sync(); err != nil {
				return err
			}
			got = append([]float32(nil), host...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var diff, norm float64
		for r := range c.rows {
			for j := range c.m {
				want := 0.0
				for i := range c.k {
					want += float64(x[r*c.k+i]) * float64(w[j*c.k+i])
				}
				want *= 2
				diff += (float64(got[r*c.m+j]) - want) * (float64(got[r*c.m+j]) - want)
				norm += want * want
			}
		}
		if rel := math.Sqrt(diff / norm); !(rel <= c.tolerance) {
			t.Errorf("%d×%d·%d×%d tf32=%v: relative error %.3g, want at most %.0e", c.rows, c.k, c.m, c.k, c.tf32, rel, c.tolerance)
		}
	}
}

// TestKernel compiles a kernel with NVRTC, launches it with each type of
// argument, and shows a compile error with NVRTC's log.
func TestKernel(t *testing.T) {
	d := cudatest.Device(t)
	const src = `extern "C" __global__ void axpb(float* y, const float* x, long long n, int k, float a) {
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) y[i] = a * x[i] + k;
}`
	x := randn(rand.New(rand.NewPCG(3, 4)), 10000)
	err := d.Do(func() error {
		mod, err := d.Compile("axpb.cu", src)
		if err != nil {
			return err
		}
		defer mod.Close()
		k, err := mod.Kernel("axpb")
		if err != nil {
			return err
		}
		s, err := d.NewStream()
		if err != nil {
			return err
		}
		defer s.Close()
		dx, err := cuda.Upload(d, x)
		if err != nil {
			return err
		}
		defer d.Free(dx)
		dy, err := d.Alloc(4 * len(x))
		if err != nil {
			return err
		}
		defer d.Free(dy)
		host, err := d.HostAlloc(len(x))
		if err != nil {
			return err
		}
		defer d.HostFree(host)
		if err := k.Launch(s, 7, 128, dy.Ptr, dx.Ptr, int64(len(x)), int32(-3), float32(0.5)); err != nil {
			return err
		}
		if err := s.ToHost(host, dy.Ptr); err != nil {
			return err
		}
		if err := s.Sync(); err != nil {
			return err
		}
		for i, v := range host {
			if want := 0.5*x[i] - 3; v != want {
				t.Fatalf("y[%d] = %v, want %v", i, v, want)
			}
		}
		if err := k.Launch(s, 1, 1, 1.5); err == nil || !strings.Contains(err.Error(), "argument 0 is a float64") {
			t.Errorf("launch with a float64: %v", err)
		}
		_, err = d.Compile("bad.cu", `extern "C" __global__ void f() { undeclared(); }`)
		if err == nil || !strings.Contains(err.Error(), "nvrtcCompileProgram") || !strings.Contains(err.Error(), "undeclared") {
			t.Errorf("compile error: %v, want NVRTC's log naming undeclared", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenMissingDevice asks for a device the machine does not have.
func TestOpenMissingDevice(t *testing.T) {
	cudatest.Device(t)
	if _, err := cuda.Open(1 << 20); err == nil || !strings.Contains(err.Error(), "device 1048576 asked for") {
		t.Errorf("open device 1048576: %v", err)
	}
}
