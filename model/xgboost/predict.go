package xgboost

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

const (
	// blockRows is how many rows go through some trees before the next ones:
	// enough to use the trees while they are in cache, few enough for the
	// rows and their margins to stay there too.
	blockRows = 64
	// parallelWork is the number of row × tree evaluations from which Predict
	// splits a batch across goroutines: a few hundred microseconds of work.
	parallelWork = 1 << 15
	// chunkBlocks is how many blocks a goroutine takes at a time.
	chunkBlocks = 4
)

// Predict scores rows rows: x holds them row-major, NumFeatures values each,
// NaN for a missing value, and Predict writes NumOutputs predictions for each
// to out, row-major, after the objective's transform (probabilities for the
// logistic objectives and multi:softprob). It panics if x or out is shorter
// than that.
//
// Large batches are split across GOMAXPROCS goroutines; Predict allocates
// nothing for a batch it scores on the calling goroutine.
func (m *Model) Predict(x []float32, rows int, out []float32) {
	short := m.numFeatures > 0 && len(x)/m.numFeatures < rows || len(out)/m.numOutputs < rows
	if rows < 0 || short {
		panic(fmt.Sprintf("xgboost: Predict of %d rows with %d inputs and %d outputs, want %d × %d and %d × %d",
			rows, len(x), len(out), rows, m.numFeatures, rows, m.numOutputs))
	}
	x = x[:rows*m.numFeatures]
	out = out[:rows*m.numOutputs]
	workers := runtime.GOMAXPROCS(0)
	blocks := (rows + blockRows - 1) / blockRows
	if workers > 1 && blocks > 1 && rows*len(m.roots) >= parallelWork {
		m.predictParallel(x, rows, out, min(workers, (blocks+chunkBlocks-1)/chunkBlocks))
		return
	}
	m.predictRange(x, out, 0, rows)
}

// predictParallel scores the rows on workers goroutines, the calling one
// among them, which take chunks of rows as they go.
func (m *Model) predictParallel(x []float32, rows int, out []float32, workers int) {
	const chunk = blockRows * chunkBlocks
	var claimed atomic.Int64
	work := func() {
		for {
			lo := int(claimed.Add(chunk)) - chunk
			if lo >= rows {
				return
			}
			m.predictRange(x, out, lo, min(lo+chunk, rows))
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// predictRange scores rows [lo, hi) a block at a time.
func (m *Model) predictRange(x, out []float32, lo, hi int) {
	nf, no := m.numFeatures, m.numOutputs
	for b := lo; b < hi; b += blockRows {
		e := min(b+blockRows, hi)
		o := out[b*no : e*no]
		for i := 0; i < len(o); i += no {
			copy(o[i:i+no], m.baseMargin)
		}
		xs := x[b*nf : e*nf]
		// A few trees at a time, as many as lanes, through every row of the
		// block while those trees are in cache.
		for t := 0; t < len(m.roots); t += lanes {
			roots := m.roots[t:min(t+lanes, len(m.roots))]
			group := m.group[t : t+len(roots)]
			for r := 0; r < e-b; r++ {
				row := xs[r*nf : (r+1)*nf]
				if nf == 0 {
					row = noFeatures[:] // leaves read feature 0
				}
				leaves := m.leaves(roots, row)
				// Each margin adds its trees in tree order, in float32, as
				// XGBoost does.
				for k, g := range group {
					o[r*no+int(g)] += leaves[k]
				}
			}
		}
		for r := 0; r < e-b; r++ {
			m.transform(o[r*no : (r+1)*no])
		}
	}
}

// lanes is how many trees leaves takes a row down side by side.
const lanes = 8

// noFeatures is the row of a model without features, whose trees are all
// single leaves.
var noFeatures [1]float32

// leaves is the values of the leaves that row x reaches in the trees at
// roots, at most lanes of them. It moves down the trees a level at a time
// until all are at leaves (where they stay put), so that the processor
// overlaps the loads and compares of the trees, which are a dependent chain
// in one tree.
func (m *Model) leaves(roots []int32, x []float32) [lanes]float32 {
	nodes := m.nodes
	var at [lanes]uint32
	for k, r := range roots {
		at[k] = uint32(r)
	}
	active := at[:len(roots)]
	for {
		inner := uint32(0)
		for k, i := range active {
			n := &nodes[i]
			active[k] = n.left + next(n, x[n.feat&featMask])
			inner |= n.feat&leaf ^ leaf
		}
		if inner == 0 {
			break
		}
	}
	var v [lanes]float32
	for k, i := range active {
		v[k] = nodes[i].cond
	}
	return v
}

// next is 1 if value v goes to the right child of internal node n, 0 if it
// goes left: right unless v < cond, or unless v is missing (NaN, which compares
// false) and the default is left. At a leaf it is 0. It is written so that
// the compiler uses conditional moves rather than branches.
func next(n *node, v float32) uint32 {
	right := uint32(1)
	if v < n.cond {
		right = 0
	}
	if v != v {
		right = n.feat>>31 ^ 1
	}
	return right &^ (n.feat >> 30)
}

// transform turns margins into predictions in place.
func (m *Model) transform(o []float32) {
	switch m.objective {
	case BinaryLogistic, RegLogistic:
		for i, v := range o {
			o[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case MultiSoftprob:
		// XGBoost's Softmax: exponents relative to the largest margin, their
		// sum in double.
		wmax := o[0]
		for _, v := range o[1:] {
			wmax = max(wmax, v)
		}
		sum := 0.0
		for i, v := range o {
			e := float32(math.Exp(float64(v - wmax)))
			o[i] = e
			sum += float64(e)
		}
		s := float32(sum)
		for i := range o {
			o[i] /= s
		}
	}
}
