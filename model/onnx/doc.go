// Package onnx loads feed-forward ONNX models, multilayer perceptrons and
// the like, and evaluates them in pure Go on the CPU, so that serve can score
// the features it computes without a sidecar.
//
// # Format
//
// Parse reads the "onnx" format: a serialized ModelProto, what
// onnx.save and the exporters (torch.onnx, tf2onnx, skl2onnx) write to a
// .onnx file, decoded with google.golang.org/protobuf and Go types generated
// from ONNX's own schema (see internal/onnxpb). Supported are graphs of the
// default operator set (ai.onnx), version 7 or later, made of these
// operators:
//
//   - Gemm (alpha, beta, transB; transA only 0), MatMul;
//   - Add, Sub, Mul, with numpy's broadcasting;
//   - Relu, LeakyRelu (alpha), Sigmoid, Tanh, Softmax (axis), with the
//     semantics of the model's opset: before 13, Softmax flattens the shape
//     from its axis on;
//   - Flatten, Identity, Concat;
//   - BatchNormalization in inference mode (scale, B, mean, var, epsilon).
//
// The graph has one input, of data type FLOAT and shape [batch, n] (or
// [batch, d1, d2, ...]), whose first dimension, the batch, may be symbolic
// or fixed and the others are fixed; and one output, computed from it.
// Initializers are FLOAT tensors, their data in raw_data (little-endian) or
// float_data. Anything else (another operator or domain, an attribute or an
// attribute value not listed, another data type, several inputs or outputs,
// external data, control flow) is refused at load with an error that matches
// ErrUnsupported and names what is missing; a file that is not a consistent
// model (undefined values, a cycle, data that does not match its shape,
// operands that do not fit together) is refused with ErrMalformed.
//
// # Semantics
//
// The nodes are evaluated in topological order, whatever their order in the
// file; the nodes the output does not depend on are checked but not
// evaluated, and nodes whose inputs are all constants are folded at load
// where they are elementwise, Identity or Flatten.
//
// The rows of a batch are independent: each output row depends on its input
// row only. So a fixed batch dimension is treated like a symbolic one (a
// model exported for a batch of 1 evaluates any number of rows), and what
// would mix rows is refused: a Softmax, Concat or Flatten over the batch
// axis, a Gemm with transA, a MatMul whose second operand is computed from
// the input, a constant operand that varies along the batch dimension, a
// broadcast that would move the batch dimension.
//
// Arithmetic is float32, as ONNX runtimes do it, except the exponentials of
// Sigmoid, Tanh and Softmax, and Softmax's sum, which are float64. A NaN
// input is a value like others: it propagates through the operators to the
// outputs that depend on it (ONNX has no missing values). A bias added after
// a Gemm or MatMul, and an activation after it, are folded into its step;
// BatchNormalization becomes (x - mean) · scale/sqrt(var + epsilon) + B.
// Results agree with a float64 evaluation of the graph within 1e-5 on the
// fixtures.
//
// # Evaluation
//
// Parse compiles the graph into a few steps over the rows of a chunk, each
// writing one value to a column of scratch memory that is reused once the
// value is no longer read. Model.Predict evaluates a row-major batch a chunk
// of up to 64 rows at a time, all the steps for one chunk before the next,
// so that the values stay in cache; large batches are split across
// GOMAXPROCS goroutines by chunks of rows, and nothing is allocated per row.
// A Model is immutable and safe for concurrent use.
//
// Dense layers (Gemm, MatMul) keep their weights transposed, a row per
// output, and multiply them by the rows of the chunk a block of weights at a
// time, while the block is in cache. Each output is the dot product of an
// input row and a weight row by gonum's Sdot, written in SSE assembly on
// amd64: about 20 GFLOP/s a core, against about 9 for the best
// register-blocked loop in Go. Its order of summation depends on the weight
// row only, so that a row gives the same bits alone, in a batch and on any
// goroutine.
//
// # On a GPU
//
// Model.OnGPU copies a model to an NVIDIA GPU (package internal/cuda, which
// opens the CUDA libraries at run time): its weights and constants stay on
// the device, each dense layer is a cuBLAS SGEMM and each other step a
// kernel compiled for the device by NVRTC at load, with the CPU's
// arithmetic (float32, exponentials in double, no fused multiply-adds).
// Batches go through pinned host memory on a lane's stream, up to 16,384
// rows at a time; two lanes let one batch's copies overlap another's
// computing. Outputs agree with the CPU's within 1e-5, relative, in
// float32; GPUOptions.TF32 runs the dense layers on the tensor cores with
// inputs rounded to TF32, within about 1e-3.
package onnx
