package onnx

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

const (
	// chunkBytes bounds the scratch memory of a chunk of rows, so that the
	// values of a chunk stay in the L2 cache between steps.
	chunkBytes = 256 << 10
	// maxChunkRows bounds the rows of a chunk.
	maxChunkRows = 64
	// parallelWork is the work of a batch, in multiply-adds, from which
	// Predict splits it across goroutines: some tens of microseconds.
	parallelWork = 1 << 17
)

// A buffer is a column of the scratch memory of a chunk, width elements a
// row, that holds values one after the other.
type buffer struct {
	width, off int
}

// allocate gives each slot that a step writes (but the output) a scratch
// buffer, reusing a buffer once the values in it are no longer read, and
// sizes the chunks.
func (m *Model) allocate() error {
	last := make([]int, len(m.slots)) // the last step that reads each slot
	for i, s := range m.steps {
		for _, in := range s.inputs() {
			last[in] = i
		}
	}
	var bufs []buffer
	var free []int // buffers not in use
	release := make([][]int, len(m.steps))
	for i, s := range m.steps {
		out := s.output()
		if m.slots[out].buf != bufOutput {
			w := m.slots[out].width
			// The narrowest free buffer wide enough, else the widest free
			// one, widened, else a new one.
			pick := -1
			for k, b := range free {
				if pick < 0 {
					pick = k
					continue
				}
				p := bufs[free[pick]].width
				if bw := bufs[b].width; p < w && bw > p || bw >= w && bw < p {
					pick = k
				}
			}
			b := len(bufs)
			if pick >= 0 {
				b = free[pick]
				free = append(free[:pick], free[pick+1:]...)
			} else {
				bufs = append(bufs, buffer{})
			}
			bufs[b].width = max(bufs[b].width, w)
			m.slots[out].buf = b
			// Free it after its last read: after this step if none.
			release[max(i, last[out])] = append(release[max(i, last[out])], b)
		}
		m.rowCost += s.cost()
		free = append(free, release[i]...)
	}
	for i := range bufs {
		if i > 0 {
			bufs[i].off = bufs[i-1].off + bufs[i-1].width
		}
		m.rowWidth += bufs[i].width
		if m.rowWidth > maxRowWidth {
			return unsupported("values of more than %d elements a row at once", maxRowWidth)
		}
	}
	m.bufs = bufs
	m.maxChunk = max(1, min(maxChunkRows, chunkBytes/4/max(1, m.rowWidth)))
	return nil
}

// scratch is a goroutine's memory for a chunk of rows.
type scratch struct {
	arena []float32
	views [][]float32 // each slot's rows of the chunk
}

func (m *Model) getScratch() *scratch {
	if s, ok := m.scratch.Get().(*scratch); ok {
		return s
	}
	return &scratch{
		arena: make([]float32, m.maxChunk*m.rowWidth),
		views: make([][]float32, len(m.slots)),
	}
}

// Predict evaluates the graph on rows rows: x holds them row-major,
// NumFeatures values each (a NaN is a value like others, which the
// operators propagate), and Predict writes NumOutputs values for each to out,
// row-major. It panics if x or out is shorter than that.
//
// Large batches are split across GOMAXPROCS goroutines; Predict allocates
// nothing for a batch it evaluates on the calling goroutine, once it has
// evaluated one.
func (m *Model) Predict(x []float32, rows int, out []float32) {
	if rows < 0 || len(x)/m.numFeatures < rows || len(out)/m.numOutputs < rows {
		panic(fmt.Sprintf("onnx: Predict of %d rows with %d inputs and %d outputs, want %d × %d and %d × %d",
			rows, len(x), len(out), rows, m.numFeatures, rows, m.numOutputs))
	}
	x = x[:rows*m.numFeatures]
	out = out[:rows*m.numOutputs]
	workers := runtime.GOMAXPROCS(0)
	if workers > 1 && rows > 1 && rows*m.rowCost >= parallelWork {
		// Chunks small enough for each goroutine to have some.
		chunk := min(m.maxChunk, (rows+workers-1)/workers)
		m.predictParallel(x, rows, out, chunk, min(workers, (rows+chunk-1)/chunk))
		return
	}
	s := m.getScratch()
	m.predictRange(s, x, out, 0, rows, m.maxChunk)
	m.scratch.Put(s)
}

// predictParallel evaluates the rows on workers goroutines, the calling one
// among them, which take chunks of rows as they go.
func (m *Model) predictParallel(x []float32, rows int, out []float32, chunk, workers int) {
	var claimed atomic.Int64
	work := func() {
		s := m.getScratch()
		defer m.scratch.Put(s)
		for {
			lo := int(claimed.Add(int64(chunk))) - chunk
			if lo >= rows {
				return
			}
			m.predictRange(s, x, out, lo, min(lo+chunk, rows), chunk)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// predictRange evaluates rows [lo, hi), chunk rows at a time.
func (m *Model) predictRange(s *scratch, x, out []float32, lo, hi, chunk int) {
	nf, no := m.numFeatures, m.numOutputs
	for b := lo; b < hi; b += chunk {
		e := min(b+chunk, hi)
		n := e - b
		for i, sl := range m.slots {
			switch sl.buf {
			case bufNone:
				s.views[i] = nil
			case bufInput:
				s.views[i] = x[b*nf : e*nf]
			case bufOutput:
				s.views[i] = out[b*no : e*no]
			default:
				off := n * m.bufs[sl.buf].off
				s.views[i] = s.arena[off : off+n*sl.width]
			}
		}
		for _, st := range m.steps {
			st.run(s.views, n)
		}
	}
}
