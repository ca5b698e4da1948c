package replay

import (
	"context"
	"unsafe"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// rowsFlush is the size of the feature log rows a replay holds before it
// writes them, at the next slot. (A variable for tests.)
var rowsFlush int64 = 32 << 20

// rows writes a replay's feature log rows, in batches of whole slots whose
// offsets are the slots': a batch's rows are every row of its slots.
type rows struct {
	log     *offline.FeatureLog
	off     *offline.Dir
	stream  string
	from    int // the first slot whose rows are not in the log yet
	next    int // the first slot of the rows held
	cur     int // the slot of the entity whose rows are being added
	held    *offline.Batch
	size    int64 // what the rows held take
	written int64
}

// newRows returns the writer of stream, resuming after the slots an
// earlier run wrote: its high-water mark is their last.
func newRows(ctx context.Context, off *offline.Dir, log *offline.FeatureLog, stream string) (*rows, error) {
	hwm, ok, err := off.HighWaterMark(ctx, log.Dir, stream)
	if err != nil {
		return nil, err
	}
	w := &rows{log: log, off: off, stream: stream, cur: -1}
	if ok {
		w.from = int(hwm) + 1
	}
	w.next = w.from
	return w, nil
}

// add holds the row of ev, just applied to st.
func (w *rows) add(st *features.State, ev *features.Event) {
	if w.held == nil {
		w.held = w.log.Batch(w.stream, int64(w.next), 0)
	}
	row := w.log.Row(st, ev)
	w.held.Rows = append(w.held.Rows, row)
	w.size += int64(unsafe.Sizeof(row)) + int64(len(row))*int64(unsafe.Sizeof(features.Value{}))
}

// reach is called before the rows of an entity of slot are added, slot by
// slot: past rowsFlush, the rows held, of earlier slots, are written.
func (w *rows) reach(ctx context.Context, slot int) error {
	if slot == w.cur {
		return nil
	}
	w.cur = slot
	if w.size < rowsFlush || slot <= w.next {
		return nil
	}
	return w.write(ctx, slot-1)
}

// write writes the rows held, those of the slots up to last.
func (w *rows) write(ctx context.Context, last int) error {
	if last < w.next {
		return nil
	}
	if w.held != nil {
		w.held.LastOffset = int64(last)
		if err := w.off.WriteBatch(ctx, *w.held); err != nil {
			return err
		}
		w.written += int64(len(w.held.Rows))
	}
	w.held, w.size, w.next = nil, 0, last+1
	return nil
}
