//go:build linux && !nogpu

package cuda

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// sonames are the libraries tried, newest CUDA first. libcuda comes with
// the driver; the others with the toolkit, or with a container image's
// CUDA runtime libraries.
var sonames = []struct {
	what  string
	names []string
}{
	{"driver", []string{"libcuda.so.1"}},
	{"runtime", []string{"libcudart.so.13", "libcudart.so.12"}},
	{"cuBLAS", []string{"libcublas.so.13", "libcublas.so.12"}},
	{"NVRTC", []string{"libnvrtc.so.13", "libnvrtc.so.12"}},
}

func load() (*api, error) {
	var handles [4]uintptr
	var loaded []string
	for i, lib := range sonames {
		var tried []string
		for _, name := range lib.names {
			h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				handles[i] = h
				loaded = append(loaded, name)
				break
			}
			tried = append(tried, err.Error())
		}
		if handles[i] == 0 {
			return nil, fmt.Errorf("no CUDA %s library: %s", lib.what, strings.Join(tried, "; "))
		}
	}
	a := &api{libs: strings.Join(loaded, ", ")}
	drv, rt, blas, nvrtc := handles[0], handles[1], handles[2], handles[3]
	syms := []struct {
		fn   any
		lib  uintptr
		name string
	}{
		{&a.cuInit, drv, "cuInit"},
		{&a.cuDriverGetVersion, drv, "cuDriverGetVersion"},
		{&a.cuDeviceGetCount, drv, "cuDeviceGetCount"},
		{&a.cuDeviceGet, drv, "cuDeviceGet"},
		{&a.cuDeviceGetName, drv, "cuDeviceGetName"},
		{&a.cuDeviceGetAttribute, drv, "cuDeviceGetAttribute"},
		{&a.cuDevicePrimaryCtxRetain, drv, "cuDevicePrimaryCtxRetain"},
		{&a.cuCtxSetCurrent, drv, "cuCtxSetCurrent"},
		{&a.cuModuleLoadData, drv, "cuModuleLoadData"},
		{&a.cuModuleGetFunction, drv, "cuModuleGetFunction"},
		{&a.cuModuleUnload, drv, "cuModuleUnload"},
		{&a.cuLaunchKernel, drv, "cuLaunchKernel"},
		{&a.cuGetErrorString, drv, "cuGetErrorString"},
		{&a.cudaRuntimeGetVersion, rt, "cudaRuntimeGetVersion"},
		{&a.cudaMalloc, rt, "cudaMalloc"},
		{&a.cudaFree, rt, "cudaFree"},
		{&a.cudaMallocHost, rt, "cudaMallocHost"},
		{&a.cudaFreeHost, rt, "cudaFreeHost"},
		{&a.cudaMemcpyAsync, rt, "cudaMemcpyAsync"},
		{&a.cudaMemGetInfo, rt, "cudaMemGetInfo"},
		{&a.cudaStreamCreateWithFlags, rt, "cudaStreamCreateWithFlags"},
		{&a.cudaStreamSynchronize, rt, "cudaStreamSynchronize"},
		{&a.cudaStreamDestroy, rt, "cudaStreamDestroy"},
		{&a.cudaGetErrorString, rt, "cudaGetErrorString"},
		{&a.cublasCreate, blas, "cublasCreate_v2"},
		{&a.cublasDestroy, blas, "cublasDestroy_v2"},
		{&a.cublasSetStream, blas, "cublasSetStream_v2"},
		{&a.cublasSetMathMode, blas, "cublasSetMathMode"},
		{&a.cublasSgemm, blas, "cublasSgemm_v2"},
		{&a.nvrtcVersion, nvrtc, "nvrtcVersion"},
		{&a.nvrtcCreateProgram, nvrtc, "nvrtcCreateProgram"},
		{&a.nvrtcCompileProgram, nvrtc, "nvrtcCompileProgram"},
		{&a.nvrtcGetCUBINSize, nvrtc, "nvrtcGetCUBINSize"},
		{&a.nvrtcGetCUBIN, nvrtc, "nvrtcGetCUBIN"},
		{&a.nvrtcGetProgramLogSize, nvrtc, "nvrtcGetProgramLogSize"},
		{&a.nvrtcGetProgramLog, nvrtc, "nvrtcGetProgramLog"},
		{&a.nvrtcDestroyProgram, nvrtc, "nvrtcDestroyProgram"},
		{&a.nvrtcGetErrorString, nvrtc, "nvrtcGetErrorString"},
	}
	for _, s := range syms {
		p, err := purego.Dlsym(s.lib, s.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		purego.RegisterFunc(s.fn, p)
	}
	return a, nil
}
