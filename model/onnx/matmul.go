package onnx

import "gonum.org/v1/gonum/blas/gonum"

// blockFloats is about how many elements of w matmul multiplies by all the
// rows of x before it moves on to the next ones, so that they stay in cache.
const blockFloats = 16 << 10

// blas is gonum's pure-Go BLAS, whose dot product of float32 vectors is
// written in SSE assembly on amd64 (and in Go elsewhere).
var blas gonum.Implementation

// matmul sets y, rows×m, to x, rows×k, times the transpose of w, m×k: each
// element of y is the dot product of a row of x and a row of w. The rows of
// w go through all the rows of x a block at a time, while they are in cache.
//
// Each element is gonum's Sdot of the two rows, whose order of summation
// depends on k and on the address of the row of w only, so that a row of x
// gets the same bits whether it is alone or in a batch, and wherever it is.
func matmul(y, x, w []float32, rows, k, m int) {
	cols := max(1, blockFloats/k)
	for j0 := 0; j0 < m; j0 += cols {
		j1 := min(j0+cols, m)
		for r := range rows {
			xr := x[r*k : (r+1)*k]
			yr := y[r*m+j0 : r*m+j1]
			for j := range yr {
				yr[j] = blas.Sdot(k, xr, 1, w[(j0+j)*k:(j0+j+1)*k], 1)
			}
		}
	}
}
