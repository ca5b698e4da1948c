package offline

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/quiver-ml/quiver/features"
)

// FeatureLog is the layout of a view version's feature log, which ingest and
// replays write: a row per event applied to an entity's state, holding the
// event's join keys and time and the view's features as of the event.
type FeatureLog struct {
	Dir     string   // features/<view>/v<version>
	Columns []Column // the join keys, ColEventTime, then the view's features
	eng     *features.Engine
	keys    []int // the join keys' fields in the source
}

// FeatureLogDir returns the directory of a view version's feature log.
func FeatureLogDir(v *features.View) string {
	return "features/" + v.Name + "/v" + strconv.Itoa(v.Version)
}

// NewFeatureLog returns the feature log of the view version eng computes.
func NewFeatureLog(defs *features.Definitions, eng *features.Engine) *FeatureLog {
	v := eng.View()
	src := defs.Source(v.Source)
	l := &FeatureLog{Dir: FeatureLogDir(v), eng: eng}
	for _, k := range defs.Entity(v.Entity).JoinKeys {
		f := src.Field(k)
		l.keys = append(l.keys, f)
		l.Columns = append(l.Columns, Column{Name: k, Type: src.Schema[f].Type})
	}
	l.Columns = append(l.Columns, Column{Name: ColEventTime, Type: features.TypeTimestamp})
	for _, f := range v.Features {
		l.Columns = append(l.Columns, Column{Name: f.Name, Type: f.ValueType(src)})
	}
	return l
}

// Batch returns an empty batch of the log's rows from stream.
func (l *FeatureLog) Batch(stream string, first, last int64) *Batch {
	return &Batch{Dir: l.Dir, Columns: l.Columns, TimeColumn: len(l.keys), Stream: stream, FirstOffset: first, LastOffset: last}
}

// Row returns the row of ev, just applied to st: the features are evaluated
// at the event's time, or at the entity's latest event for one that came
// late.
func (l *FeatureLog) Row(st *features.State, ev *features.Event) []features.Value {
	row := make([]features.Value, len(l.Columns))
	for i, f := range l.keys {
		row[i] = ev.Fields[f]
	}
	n := len(l.keys)
	row[n] = features.Timestamp(ev.Time)
	last, _ := st.LastEventTime()
	if err := l.eng.Evaluate(st, max(ev.Time, last), row[n+1:]); err != nil {
		panic(err) // evaluating at or after the latest event cannot fail
	}
	return row
}

// RemoveLog removes every file of a log directory, and returns how many it
// removed: a replay that recomputes a view version rewrites its feature log.
// Nothing may write to the log meanwhile. It takes the log's compaction
// lock: while a compaction runs, it fails with an error matching ErrLocked.
func (d *Dir) RemoveLog(ctx context.Context, dir string) (int, error) {
	snap, err := d.snapshot(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("remove log: %w", err)
	}
	if len(snap.parts) == 0 {
		return 0, nil
	}
	l, err := d.Lock(ctx, dir, compactLock, compactLockTTL)
	if err != nil {
		return 0, fmt.Errorf("remove log %w", err)
	}
	defer l.Release()
	ctx, stop := l.Hold(ctx)
	defer stop()
	ix, unlock, err := d.refreshed(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("remove log %s: %w", dir, err)
	}
	defer unlock()
	n := 0
	for _, part := range slices.Sorted(maps.Keys(ix.parts)) {
		p := ix.parts[part]
		names := slices.Sorted(maps.Keys(p.files))
		if err := l.Keep(ctx); err != nil {
			return n, fmt.Errorf("remove log %s: %w", dir, err)
		}
		if err := d.b.remove(ctx, path.Join(dir, part), names...); err != nil {
			return n, fmt.Errorf("remove log %s: %w", dir, err)
		}
		ix.dropPart(p, part)
		n += len(names)
	}
	clear(ix.streams) // their batches are gone with their files
	ix.mod = time.Time{}
	return n, nil
}
