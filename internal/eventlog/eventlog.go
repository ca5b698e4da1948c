// Package eventlog reads a source's events back from the offline event log,
// as backfill and replays need them.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// fn runs: up to one per core at once, and up to readAhead bytes of them (a
// larger file alone).
func Each(ctx context.Context, dir *offline.Dir, src *features.Source, fields []int, fn func(*features.Event) error) error {
	files, err := dir.LogFiles(ctx, "events/"+src.Name)
	if err != nil {
		return err
	}
	columns := readColumns(src, fields)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	decoded := make([]chan logFile, len(files)) // each gets one value
	for i := range decoded {
		decoded[i] = make(chan logFile, 1)
	}
	// The files decoded and not yet used: each weighs its size, and at
	// least a core's share of the budget.
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
				var d logFile
				d.cols, d.rows, _, d.err = dir.ReadLogFile(ctx, f.Name, columns...)
				decoded[i] <- d
			})
		}
	})
	var ev features.Event
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		var d logFile
		select {
		case d = <-decoded[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if d.err != nil {
			return d.err
		}
		if err := each(src, f.Name, d.cols, d.rows, &ev, fn); err != nil {
			return err
		}
		ahead.Release(weight(f))
	}
	return nil
}

// EachParallel is Each for work that needs no order between files: workers
// goroutines each read and decode a file at a time and call fn with its
// events, in order, and their own number, from 0. One file's events go to
// one goroutine; files go to whichever is free.
func EachParallel(ctx context.Context, dir *offline.Dir, src *features.Source, fields []int, workers int, fn func(worker int, ev *features.Event) error) error {
	files, err := dir.LogFiles(ctx, "events/"+src.Name)
	if err != nil {
		return err
	}
	columns := readColumns(src, fields)
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := range max(1, workers) {
		g.Go(func() error {
			var ev features.Event
			call := func(ev *features.Event) error { return fn(w, ev) }
			for i := int(next.Add(1) - 1); i < len(files); i = int(next.Add(1) - 1) {
				cols, rows, _, err := dir.ReadLogFile(ctx, files[i].Name, columns...)
				if err != nil {
					return err
				}
				if err := each(src, files[i].Name, cols, rows, &ev, call); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
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

// each calls fn with the events of a decoded log file, in ev.
func each(src *features.Source, name string, cols []offline.Column, rows [][]features.Value, ev *features.Event, fn func(*features.Event) error) error {
	m, err := newMapping(src, cols)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, row := range rows {
		m.event(row, ev)
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// readAhead bounds the size of the files Each decodes ahead: decoded, an
// event takes about ten times its bytes in a file.
const readAhead = 64 << 20

// logFile is a decoded event log file.
type logFile struct {
	cols []offline.Column
	rows [][]features.Value
	err  error
}

// Files returns how many files Each would read, for progress.
func Files(ctx context.Context, dir *offline.Dir, src *features.Source) (int, error) {
	files, err := dir.LogFiles(ctx, "events/"+src.Name)
	return len(files), err
}

// mapping reads event log rows into events of a source.
type mapping struct {
	fields                  []int // per source field, the log column, or -1
	time, partition, offset int
}

func newMapping(src *features.Source, cols []offline.Column) (*mapping, error) {
	index := func(name string) int {
		for j, c := range cols {
			if c.Name == name {
				return j
			}
		}
		return -1
	}
	m := &mapping{fields: make([]int, len(src.Schema)), time: index(offline.ColEventTime),
		partition: index(offline.ColPartition), offset: index(offline.ColOffset)}
	if m.time < 0 || m.partition < 0 || m.offset < 0 {
		return nil, errors.New("not an event log file: it lacks _event_time, _partition or _offset")
	}
	for i, f := range src.Schema {
		m.fields[i] = index(f.Name)
		if j := m.fields[i]; j >= 0 && cols[j].Type != f.Type {
			return nil, fmt.Errorf("column %s is %s, the schema says %s", f.Name, cols[j].Type, f.Type)
		}
	}
	return m, nil
}

func (m *mapping) event(row []features.Value, ev *features.Event) {
	ev.Time, ev.Partition, ev.Offset = row[m.time].Int(), int32(row[m.partition].Int()), row[m.offset].Int()
	ev.Fields = ev.Fields[:0]
	for _, j := range m.fields {
		if j < 0 {
			ev.Fields = append(ev.Fields, features.Null)
		} else {
			ev.Fields = append(ev.Fields, row[j])
		}
	}
}
