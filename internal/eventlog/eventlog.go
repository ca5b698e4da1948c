// Package eventlog reads a source's events back from the offline event log,
// as backfill and replays need them.
package eventlog

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

// Each calls fn with every event of src in the offline event log, file by
// file (in date and time order), each file's events in its order. The event
// is reused between calls. Given fields (schema indexes), it reads only
// those, and the others are null. Fields the schema has gained since a file
// was written are null in its events; a field read whose column has another
// type is an error naming the file. Files are read and decoded ahead while
// fn runs, a row group at a time: up to one file per core at once, and up
// to readAhead bytes of them (a larger file alone).
func Each(ctx context.Context, dir *offline.Dir, src *features.Source, fields []int, fn func(*features.Event) error) error {
	files, columns, err := logFiles(ctx, dir, src, fields)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	// Per file, its batches and then the error that ended it, if any: a
	// batch decoded ahead of the one fn is given.
	decoded := make([]chan logGroup, len(files))
	for i := range decoded {
		decoded[i] = make(chan logGroup, 1)
	}
	// The files being read ahead: each weighs its size, and at least a
	// core's share of the budget.
	ahead := semaphore.NewWeighted(readAhead)
	weight := func(f offline.LogFile) int64 {
		return min(readAhead, max(f.Size, readAhead/int64(runtime.GOMAXPROCS(0))))
	}
	wg.Go(func() {
		for i, f := range files {
			if ahead.Acquire(ctx, weight(f)) != nil {
				return // ended
			}
			wg.Go(func() {
				defer close(decoded[i])
				err := read(ctx, dir, src, f.Name, columns, func(b *Batch) error {
					select {
					case decoded[i] <- logGroup{batch: b}:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
				if err != nil {
					select {
					case decoded[i] <- logGroup{err: err}:
					case <-ctx.Done(): // the reader sees it
					}
				}
			})
		}
	})
	var ev features.Event
	for i, f := range files {
		for {
			var d logGroup
			var more bool
			select {
			case d, more = <-decoded[i]:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !more {
				if err := ctx.Err(); err != nil {
					return err // the file's error may not have been sent
				}
				break
			}
			if d.err != nil {
				return d.err
			}
			for r := range d.batch.Len {
				d.batch.Event(r, &ev)
				if err := fn(&ev); err != nil {
					return err
				}
			}
		}
		ahead.Release(weight(f))
	}
	return nil
}

// EachParallel is Each for work that needs no order between files, handed
// a row group of a file at a time: workers goroutines each read and decode
// a file at a time and call fn with each of its row groups and their own
// number, from 0. The batch is not to be used after fn returns.
func EachParallel(ctx context.Context, dir *offline.Dir, src *features.Source, fields []int, workers int, fn func(worker int, b *Batch) error) error {
	files, columns, err := logFiles(ctx, dir, src, fields)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := range max(1, workers) {
		g.Go(func() error {
			for i := int(next.Add(1) - 1); i < len(files); i = int(next.Add(1) - 1) {
				if err := ctx.Err(); err != nil {
					return err // another worker's error
				}
				if err := read(ctx, dir, src, files[i].Name, columns, func(b *Batch) error { return fn(w, b) }); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// logFiles returns the files of src's event log and the columns to read of
// them for the schema fields.
func logFiles(ctx context.Context, dir *offline.Dir, src *features.Source, fields []int) ([]offline.LogFile, []string, error) {
	files, err := dir.LogFiles(ctx, "events/"+src.Name)
	return files, readColumns(src, fields), err
}

// readColumns returns the log columns an event with the schema fields
// needs: nil, all of them, if fields is nil.
func readColumns(src *features.Source, fields []int) []string {
	if fields == nil {
		return nil
	}
	columns := []string{offline.ColEventTime, offline.ColPartition, offline.ColOffset}
	for _, f := range fields {
		columns = append(columns, src.Schema[f].Name)
	}
	return columns
}

// readAhead bounds the size of the files Each reads ahead at once.
const readAhead = 64 << 20

// logGroup is a decoded row group of an event log file, or the error that
// ended the file's reading.
type logGroup struct {
	batch *Batch
	err   error
}

// Batch is the events of a row group of a log file, column by column.
type Batch struct {
	Name                    string // the file's, in the store
	Len                     int    // events
	time, partition, offset *offline.ColumnValues
	fields                  []*offline.ColumnValues // per schema field, nil if not read
}

// read reads a log file's columns and calls fn with each of its row
// groups as a batch of src's events.
func read(ctx context.Context, dir *offline.Dir, src *features.Source, name string, columns []string, fn func(*Batch) error) error {
	return dir.EachLogGroup(ctx, name, columns, func(cols []offline.Column, data []offline.ColumnValues) error {
		b, err := batch(src, name, cols, data)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// batch returns a row group's columns as a batch of src's events.
func batch(src *features.Source, name string, cols []offline.Column, data []offline.ColumnValues) (*Batch, error) {
	column := func(name string) *offline.ColumnValues {
		for j, c := range cols {
			if c.Name == name {
				return &data[j]
			}
		}
		return nil
	}
	b := &Batch{Name: name, time: column(offline.ColEventTime), partition: column(offline.ColPartition), offset: column(offline.ColOffset),
		fields: make([]*offline.ColumnValues, len(src.Schema))}
	if b.time == nil || b.partition == nil || b.offset == nil || b.time.Index != nil || b.partition.Index != nil || b.offset.Index != nil {
		return nil, fmt.Errorf("%s: not an event log file: it lacks _event_time, _partition or _offset, or one is not a number", name)
	}
	b.Len = b.time.Len()
	for i, f := range src.Schema {
		b.fields[i] = column(f.Name)
		if j := slices.IndexFunc(cols, func(c offline.Column) bool { return c.Name == f.Name }); j >= 0 && cols[j].Type != f.Type {
			return nil, fmt.Errorf("%s: column %s is %s, the schema says %s", name, f.Name, cols[j].Type, f.Type)
		}
	}
	return b, nil
}

// Time, Partition and Offset return event i's.
func (b *Batch) Time(i int) int64      { return int64(b.time.Bits[i]) }
func (b *Batch) Partition(i int) int32 { return int32(b.partition.Bits[i]) }
func (b *Batch) Offset(i int) int64    { return int64(b.offset.Bits[i]) }

// Field returns the column of schema field f, or nil if the file lacks it
// or it was not read: the field is null in every event.
func (b *Batch) Field(f int) *offline.ColumnValues { return b.fields[f] }

// Event sets ev to event i.
func (b *Batch) Event(i int, ev *features.Event) {
	ev.Time, ev.Partition, ev.Offset = b.Time(i), b.Partition(i), b.Offset(i)
	ev.Fields = ev.Fields[:0]
	for _, c := range b.fields {
		v := features.Null
		if c != nil {
			v = c.At(i)
		}
		ev.Fields = append(ev.Fields, v)
	}
}
