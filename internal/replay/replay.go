// Package replay computes a view version's state from the offline event log:
// to bootstrap a new version (backfill replay, or ingest at start), or to
// catch a version up with events it has not seen.
//
// # Handover
//
// Replayed states are published as ingest publishes them: state records
// (each entity's state and, per source partition, the offset of the latest
// event applied) to the view's changelog, and to Redis. A changelog ingest
// has not created yet is created as ingest would (EnsureChangelog), with
// the partition count ingest gives all its topics keyed by entity
// (Partitions): ingest refuses a changelog of another size. A marker in the
// offline store (_replay/<view>/v<version>.json) records the offsets of the
// event log the replay covered. When ingest starts with the version, it
// catches the version up from the marker with the events logged since (an
// ingest without the version may have run meanwhile), then removes the
// marker; from there, the offsets in the records make every redelivered
// event a no-op. A version ingest starts computing for the first time, with
// no marker, is bootstrapped the same way from the whole log.
//
// Backfill replay recomputes the version, so it replaces its states
// (Replace): an entity it computed no state for loses the one an earlier
// run published, and running it again leaves exactly what the new run
// computed. A catch-up only adds to the states (Publish).
//
// While a replay runs, no ingest may compute the same version: add the
// version to the definitions, run backfill replay, then restart ingest
// with the new definitions (or just restart it, and it replays at start).
//
// Backfill replay first checks that the offline store holds the source's
// event log (CheckLog). A replay into a mistyped store would leave the
// version's changelog, and its marker in that store: ingest, with the right
// store, would find the changelog and no marker, take the version for one
// computed live, and never bootstrap it.
package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/eventlog"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

// ErrNoEventLog is CheckLog's error for a store without the source's event
// log.
var ErrNoEventLog = errors.New("replay: no event log")

// Entity is one entity's state and the offsets of the latest events applied
// to it, per source partition.
type Entity struct {
	State   *features.State
	Applied map[int32]int64
}

// Config is what a replay reads.
type Config struct {
	Definitions *features.Definitions // required
	View        *features.View        // the version to replay; required
	Offline     *offline.Dir          // required
	// After limits the replay to events with a greater offset in their
	// source partition (a catch-up); nil replays every event.
	After map[int32]int64
	// Since, when not zero, leaves out events before it for good: lifetime
	// features count only later ones. Until, when not zero, stops each
	// partition's replay before its first event at or after it; a catch-up
	// from Result.Covered applies the rest.
	Since, Until time.Time
	// Load returns an entity's current state, or nil for none; nil starts
	// every entity empty.
	Load func(key string) (*Entity, error)
}

// Result is a replay's outcome.
type Result struct {
	Entities map[string]*Entity // every entity that had an event to replay
	Covered  map[int32]int64    // per source partition, the last offset the replay covers
	Events   int64              // events read from the log, at or below the marks
	Applied  int64              // events applied
}

// Run replays the event log into the view's states. Each entity's events
// are applied in time order (then partition, offset), so that windows hold
// everything a live run would have kept; events at or below an entity's
// loaded offsets are skipped, as ingest skips them.
//
// Result.Covered is exact, whatever runs beside the replay: the stream
// marks are taken before the log is listed, only events at or below them
// are read, and with Until a partition's coverage stops before its first
// event at or after Until, so a catch-up from Covered misses nothing.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Definitions == nil || cfg.View == nil || cfg.Offline == nil {
		return nil, errors.New("replay: definitions, view and offline store are required")
	}
	view := cfg.View
	eng, err := features.NewEngine(cfg.Definitions, view)
	if err != nil {
		return nil, err
	}
	src := cfg.Definitions.Source(view.Source)
	var keyIdx []int
	for _, k := range cfg.Definitions.Entity(view.Entity).JoinKeys {
		keyIdx = append(keyIdx, src.Field(k))
	}
	covered, err := logMarks(ctx, cfg.Offline, src)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", view.Ref(), err)
	}
	res := &Result{Entities: map[string]*Entity{}, Covered: covered}
	since, until := int64(math.MinInt64), int64(math.MaxInt64)
	if !cfg.Since.IsZero() {
		since = cfg.Since.UnixMilli()
	}
	if !cfg.Until.IsZero() {
		until = cfg.Until.UnixMilli()
	}
	cut := map[int32]int64{} // per partition, the first offset of an event at or after until
	byKey := map[string][]features.Event{}
	var key []byte
	vals := make([]features.Value, 0, len(keyIdx))
	// Only the fields the view reads: the others would not change its state.
	fields := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(keyIdx), eng.Fields()...))))
	err = eventlog.Each(ctx, cfg.Offline, src, fields, func(ev *features.Event) error {
		mark, ok := res.Covered[ev.Partition]
		if !ok || ev.Offset > mark {
			return nil // past the mark: not covered, a catch-up's
		}
		res.Events++
		if ev.Time >= until {
			if c, ok := cut[ev.Partition]; !ok || ev.Offset < c {
				cut[ev.Partition] = ev.Offset
			}
			return nil
		}
		if after, ok := cfg.After[ev.Partition]; ok && ev.Offset <= after {
			return nil
		}
		if ev.Time < since {
			return nil // before --from: never part of this version
		}
		vals = vals[:0]
		for _, f := range keyIdx {
			vals = append(vals, ev.Fields[f])
		}
		var ok2 bool
		if key, ok2 = online.AppendEntityKey(key[:0], vals...); !ok2 {
			return nil // ingest dead-letters these
		}
		cp := *ev
		cp.Fields = slices.Clone(ev.Fields)
		byKey[string(key)] = append(byKey[string(key)], cp)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", view.Ref(), err)
	}
	for p, c := range cut {
		res.Covered[p] = min(res.Covered[p], c-1)
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		evs := slices.DeleteFunc(byKey[k], func(ev features.Event) bool { return ev.Offset > res.Covered[ev.Partition] })
		if len(evs) == 0 {
			continue
		}
		slices.SortFunc(evs, func(a, b features.Event) int {
			return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
		})
		var ent *Entity
		if cfg.Load != nil {
			if ent, err = cfg.Load(k); err != nil {
				return nil, fmt.Errorf("replay %s: state of %q: %w", view.Ref(), k, err)
			}
		}
		if ent == nil {
			ent = &Entity{State: eng.NewState(), Applied: map[int32]int64{}}
		}
		before := maps.Clone(ent.Applied)
		for i := range evs {
			ev := &evs[i]
			if last, ok := before[ev.Partition]; ok && ev.Offset <= last {
				continue
			}
			// An event the view cannot apply (its filter fails on a null,
			// say) changes nothing, as in ingest.
			if applied, _ := eng.Apply(ent.State, ev); !applied {
				continue
			}
			res.Applied++
			if last, ok := ent.Applied[ev.Partition]; !ok || ev.Offset > last {
				ent.Applied[ev.Partition] = ev.Offset
			}
		}
		res.Entities[k] = ent
	}
	return res, nil
}

// CheckLog returns an error matching ErrNoEventLog, naming the source and
// the store, when the offline store holds no event of src: most likely the
// wrong store. Run replays such a log into nothing, as ingest needs for a
// source with no events yet; backfill replay calls CheckLog before it
// writes anything (see the package comment). A log whose events all lie
// outside the replay's time bounds passes: the store is the right one.
func CheckLog(ctx context.Context, off *offline.Dir, src *features.Source) error {
	marks, err := logMarks(ctx, off, src)
	if err != nil {
		return err
	}
	if len(marks) == 0 {
		return fmt.Errorf("%w of source %s in offline store %s", ErrNoEventLog, src.Name, off)
	}
	return nil
}

// logMarks returns the high-water mark of each partition of src's topic in
// its event log: the last offset of its newest complete batch.
func logMarks(ctx context.Context, off *offline.Dir, src *features.Source) (map[int32]int64, error) {
	marks, err := off.Marks(ctx, "events/"+src.Name)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for stream, mark := range marks {
		if topic, p, ok := strings.Cut(stream, "/"); ok && topic == src.Topic {
			if n, err := strconv.Atoi(p); err == nil {
				out[int32(n)] = mark
			}
		}
	}
	return out, nil
}

// markerName is where the offline store keeps a version's handover marker.
func markerName(v *features.View) string {
	return "_replay/" + v.Name + "/v" + strconv.Itoa(v.Version) + ".json"
}

// Marker is a version's handover marker, in the offline store.
type Marker struct {
	// Covered is, per source partition, the last offset the version's
	// published states cover. Empty, the marker is pending: whoever takes
	// over replays the whole log.
	Covered map[int32]int64
	// Since is a pending replay's start (backfill replay --from): the
	// replay that takes over from its marker leaves out the same events.
	Since time.Time
}

type markerJSON struct {
	Covered map[string]int64 `json:"covered"` // source partition → last offset replayed
	Since   time.Time        `json:"since,omitzero"`
	At      time.Time        `json:"at"`
}

// WriteMarker records a version's marker, replacing any earlier one
// atomically. Write a pending one before creating a version's changelog,
// so that a crash in between cannot leave a changelog that looks computed.
func WriteMarker(ctx context.Context, off *offline.Dir, v *features.View, m Marker) error {
	j := markerJSON{Covered: map[string]int64{}, Since: m.Since.UTC(), At: time.Now().UTC()}
	for p, o := range m.Covered {
		j.Covered[strconv.Itoa(int(p))] = o
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return off.ReplaceFile(ctx, markerName(v), b)
}

// ReadMarker returns a version's marker, and false when there is none.
func ReadMarker(ctx context.Context, off *offline.Dir, v *features.View) (Marker, bool, error) {
	b, err := off.ReadFile(ctx, markerName(v))
	if errors.Is(err, fs.ErrNotExist) {
		return Marker{}, false, nil
	}
	if err != nil {
		return Marker{}, false, err
	}
	var j markerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Marker{}, false, fmt.Errorf("replay marker %s: %w", markerName(v), err)
	}
	m := Marker{Covered: map[int32]int64{}, Since: j.Since}
	for p, o := range j.Covered {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Marker{}, false, fmt.Errorf("replay marker %s: partition %q", markerName(v), p)
		}
		m.Covered[int32(n)] = o
	}
	return m, true, nil
}

// RemoveMarker removes a version's marker once ingest has taken over.
func RemoveMarker(ctx context.Context, off *offline.Dir, v *features.View) error {
	return off.RemoveFile(ctx, markerName(v))
}
