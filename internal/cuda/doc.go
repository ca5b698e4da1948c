// Package cuda drives an NVIDIA GPU from a binary built without cgo: it
// opens the CUDA driver (libcuda.so.1), the CUDA runtime, cuBLAS and NVRTC
// with dlopen at run time (github.com/ebitengine/purego), trying the sonames
// of CUDA 13 and then 12, and wraps the few calls a model on the GPU needs:
// device memory, pinned host memory, streams, cuBLAS's SGEMM, and kernels
// compiled from CUDA C at load time by NVRTC for the device's architecture.
//
// A machine without the libraries or without a GPU is a normal case: Open
// returns an error that matches ErrUnavailable and says what is missing, and
// the caller runs on the CPU. Builds for other systems than Linux, and
// builds with the tag nogpu (the static binaries of the container images),
// have no GPU support and answer the same way.
//
// Every call is made on an OS thread with the device's primary context
// current: Device.Do runs a function so. Values of this package are used
// inside Do only; a Stream and its buffers by one goroutine at a time.
package cuda
