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
// no marker, is bootstrapped from the whole log, as with a pending marker.
//
// Backfill replay recomputes the version, so it replaces its states
// (Replace): an entity it computed no state for loses the one an earlier
// run published, and running it again leaves exactly what the new run
// computed. So does ingest for a pending marker (an interrupted replay's,
// or a version new to it). A catch-up from a marker's offsets only adds to
// the states (Publish).
//
// # Feature log
//
// A replay writes the feature log rows of the events it applies, as ingest
// does for those it applies live (offline.FeatureLog), each entity's in
// time order: so the log has a row for every event applied to the version,
// once. A replay that recomputes the version first removes the log's files
// (offline.Dir.RemoveLog), then writes its rows under a stream of its own.
//
// A catch-up adds to the log, and a crash part way must neither lose rows
// nor write them twice. Its rows go out under the stream its marker names
// (Config.Rows), before the states they lead to, in batches of whole slots
// of entities (a fixed hash of their key), whose offsets are the slots'. A
// rerun after a crash replays the same events (Config.To, in the marker
// too) from the states it finds: those the crashed run published have
// nothing left to apply; the others' rows are in the log if their slot is at
// or below the stream's high-water mark, so the rerun writes only the
// rows of the slots above it.
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
	"unsafe"

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

// DefaultMemoryLimit is Config.MemoryLimit's default.
const DefaultMemoryLimit = 1 << 30

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
	// MemoryLimit bounds the events held at once (default
	// DefaultMemoryLimit): when those to replay take more, they are spilled
	// to files in TempDir (default os.TempDir()), and the entities computed
	// in buckets, by the hash of their key, that fit.
	MemoryLimit int64
	TempDir     string
	// Load returns the current states of a bucket's entities, by key; an
	// entity it leaves out starts empty. Nil starts every entity empty.
	Load func(ctx context.Context, keys []string) (map[string]*Entity, error)
	// Progress, if set, hears of the events read from the log as they are,
	// a number at a time.
	Progress func(events int64)
	// To, when not nil, is the last offset to replay of each source
	// partition: a catch-up's, recorded in its marker so that a rerun after
	// a crash replays the same events. Nil replays up to the log's marks
	// when the replay starts.
	To map[int32]int64
	// Rows, when not empty, names the stream (offline.Batch.Stream) under
	// which the replay writes a feature log row for each event it applies
	// (see the package comment).
	Rows string
}

// Result is a replay's outcome.
type Result struct {
	Covered  map[int32]int64 // per source partition, the last offset the replay covers
	Events   int64           // events read from the log, at or below the marks
	Applied  int64           // events applied
	Entities int             // entities that had an event applied
	Buckets  int             // buckets of entities replayed one after another
	Rows     int64           // feature log rows written
}

// Bucket is a slice of a view's entities, by the hash of their key, whose
// states a replay computed together.
type Bucket struct {
	Entities map[string]*Entity // each entity of the bucket that had an event to replay
	has      func(key string) bool
}

// Has reports whether an entity, event or not, is of the bucket.
func (b *Bucket) Has(key string) bool { return b.has(key) }

// Run replays the event log into the view's states, and hands each bucket
// of entities to publish once computed; every bucket, even one without
// entities, is handed over once. Each entity's events are applied in time
// order (then partition, offset), so that windows hold everything a live
// run would have kept; events at or below an entity's loaded offsets are
// skipped, as ingest skips them.
//
// Result.Covered is exact, whatever runs beside the replay: the stream
// marks are taken before the log is listed, only events at or below them
// are read, and with Until a partition's coverage stops before its first
// event at or after Until, so a catch-up from Covered misses nothing.
//
// The log is read once. Its events to replay are held in memory until they
// take more than Config.MemoryLimit; from then on they are spilled, and
// read back a bucket at a time.
func Run(ctx context.Context, cfg Config, publish func(*Bucket) error) (*Result, error) {
	if cfg.Definitions == nil || cfg.View == nil || cfg.Offline == nil {
		return nil, errors.New("replay: definitions, view and offline store are required")
	}
	r, err := newRun(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", cfg.View.Ref(), err)
	}
	byKey, err := r.read(ctx)
	if r.spill != nil {
		defer r.spill.close()
	}
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", cfg.View.Ref(), err)
	}
	if r.spill == nil {
		r.res.Buckets = 1
		return r.res, r.compute(ctx, byKey, slots-1, func(string) bool { return true }, publish)
	}
	of, n := r.spill.buckets(r.limit)
	r.res.Buckets = n
	for i := 0; i < slots; {
		b := of[i]
		byKey := map[string][]features.Event{}
		for ; i < slots && of[i] == b; i++ {
			err := r.spill.load(i, func(ev *features.Event) {
				key, _ := r.key(ev)
				r.hold(byKey, key, ev)
			})
			if err != nil {
				return nil, fmt.Errorf("replay %s: %w", cfg.View.Ref(), err)
			}
		}
		has := func(key string) bool { return of[slotOf(key)] == b }
		if err := r.compute(ctx, byKey, i-1, has, publish); err != nil {
			return nil, err
		}
	}
	return r.res, nil
}

// run is a replay under way.
type run struct {
	cfg          *Config
	eng          *features.Engine
	src          *features.Source
	keyIdx       []int // the join keys' fields
	fields       []int // the fields read: the join keys and those the view reads
	since, until int64 // Config.Since and Until, in epoch milliseconds
	limit        int64
	res          *Result
	spill        *spill // once the events held take more than limit
	rows         *rows  // with Config.Rows
	keyBuf       []byte
	keyVals      []features.Value
}

func newRun(ctx context.Context, cfg *Config) (*run, error) {
	eng, err := features.NewEngine(cfg.Definitions, cfg.View)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, eng: eng, src: cfg.Definitions.Source(cfg.View.Source), since: math.MinInt64, until: math.MaxInt64,
		limit: cmp.Or(cfg.MemoryLimit, DefaultMemoryLimit)}
	for _, k := range cfg.Definitions.Entity(cfg.View.Entity).JoinKeys {
		r.keyIdx = append(r.keyIdx, r.src.Field(k))
	}
	// Only the fields the view reads: the others would not change its state.
	r.fields = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(r.keyIdx), eng.Fields()...))))
	if !cfg.Since.IsZero() {
		r.since = cfg.Since.UnixMilli()
	}
	if !cfg.Until.IsZero() {
		r.until = cfg.Until.UnixMilli()
	}
	covered := maps.Clone(cfg.To)
	if covered == nil {
		if covered, err = LogMarks(ctx, cfg.Offline, r.src); err != nil {
			return nil, err
		}
	}
	r.res = &Result{Covered: covered}
	if cfg.Rows != "" {
		if r.rows, err = newRows(ctx, cfg.Offline, offline.NewFeatureLog(cfg.Definitions, eng), cfg.Rows); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// eventSize is at most what an event of n fields takes held: its fields,
// and its place in its entity's array, which grows by doubling.
func eventSize(n int) int64 {
	return 2*int64(unsafe.Sizeof(features.Event{})) + int64(n)*int64(unsafe.Sizeof(features.Value{}))
}

// key returns an event's entity key, and false for an event without one
// (ingest dead-letters those).
func (r *run) key(ev *features.Event) (string, bool) {
	r.keyVals = r.keyVals[:0]
	for _, f := range r.keyIdx {
		r.keyVals = append(r.keyVals, ev.Fields[f])
	}
	var ok bool
	r.keyBuf, ok = online.AppendEntityKey(r.keyBuf[:0], r.keyVals...)
	return string(r.keyBuf), ok
}

// hold keeps a copy of an entity's event.
func (r *run) hold(byKey map[string][]features.Event, key string, ev *features.Event) {
	cp := *ev
	cp.Fields = slices.Clone(ev.Fields)
	byKey[key] = append(byKey[key], cp)
}

// progressEvery is how many events read make a Config.Progress call.
const progressEvery = 1 << 16

// read reads the log and returns the events to replay by key, or, once
// they take more than the limit, spills them all. It counts the events
// read, and stops each partition's coverage before its first event at or
// after Until.
func (r *run) read(ctx context.Context) (map[string][]features.Event, error) {
	cut := map[int32]int64{} // per partition, the first offset of an event at or after until
	byKey := map[string][]features.Event{}
	var size, read int64
	err := eventlog.Each(ctx, r.cfg.Offline, r.src, r.fields, func(ev *features.Event) error {
		if read++; read%progressEvery == 0 && r.cfg.Progress != nil {
			r.cfg.Progress(progressEvery)
		}
		mark, ok := r.res.Covered[ev.Partition]
		if !ok || ev.Offset > mark {
			return nil // past the mark: not covered, a catch-up's
		}
		r.res.Events++
		if ev.Time >= r.until {
			if c, ok := cut[ev.Partition]; !ok || ev.Offset < c {
				cut[ev.Partition] = ev.Offset
			}
			return nil
		}
		if after, ok := r.cfg.After[ev.Partition]; ok && ev.Offset <= after {
			return nil
		}
		if ev.Time < r.since {
			return nil // before --from: never part of this version
		}
		key, ok := r.key(ev)
		if !ok {
			return nil
		}
		if r.spill != nil {
			return r.spill.add(key, ev)
		}
		r.hold(byKey, key, ev)
		if size += eventSize(len(ev.Fields)); size <= r.limit {
			return nil
		}
		var err error
		if r.spill, err = newSpill(r.cfg.TempDir, r.src); err != nil {
			return err
		}
		for k, evs := range byKey {
			for i := range evs {
				if err := r.spill.add(k, &evs[i]); err != nil {
					return err
				}
			}
		}
		byKey = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r.cfg.Progress != nil {
		r.cfg.Progress(read % progressEvery)
	}
	for p, c := range cut {
		r.res.Covered[p] = min(r.res.Covered[p], c-1)
	}
	return byKey, nil
}

// compute applies the events of a bucket's entities, by key, to their
// states, writes their feature log rows, and hands the bucket to publish.
// The bucket's slots end with lastSlot.
func (r *run) compute(ctx context.Context, byKey map[string][]features.Event, lastSlot int, has func(string) bool, publish func(*Bucket) error) error {
	type slotKey struct {
		slot int
		key  string
	}
	sks := make([]slotKey, 0, len(byKey))
	for k, evs := range byKey {
		if evs = slices.DeleteFunc(evs, func(ev features.Event) bool { return ev.Offset > r.res.Covered[ev.Partition] }); len(evs) > 0 {
			byKey[k] = evs
			sks = append(sks, slotKey{slotOf(k), k})
		}
	}
	// In slot order, the order of the feature log's batches.
	slices.SortFunc(sks, func(a, b slotKey) int { return cmp.Or(cmp.Compare(a.slot, b.slot), strings.Compare(a.key, b.key)) })
	keys := make([]string, len(sks))
	for i, sk := range sks {
		keys[i] = sk.key
	}
	loaded := map[string]*Entity{}
	if r.cfg.Load != nil && len(keys) > 0 {
		var err error
		if loaded, err = r.cfg.Load(ctx, keys); err != nil {
			return fmt.Errorf("replay %s: states: %w", r.cfg.View.Ref(), err)
		}
	}
	b := &Bucket{Entities: make(map[string]*Entity, len(keys)), has: has}
	for _, sk := range sks {
		if err := ctx.Err(); err != nil {
			return err
		}
		logged := false
		if r.rows != nil {
			if err := r.rows.reach(ctx, sk.slot); err != nil {
				return err
			}
			logged = sk.slot >= r.rows.from
		}
		k := sk.key
		evs := byKey[k]
		slices.SortFunc(evs, func(a, b features.Event) int {
			return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
		})
		ent := loaded[k]
		if ent == nil {
			ent = &Entity{State: r.eng.NewState(), Applied: map[int32]int64{}}
		}
		before := maps.Clone(ent.Applied)
		for i := range evs {
			ev := &evs[i]
			if last, ok := before[ev.Partition]; ok && ev.Offset <= last {
				continue
			}
			// An event the view cannot apply (its filter fails on a null,
			// say) changes nothing, as in ingest.
			if applied, _ := r.eng.Apply(ent.State, ev); !applied {
				continue
			}
			r.res.Applied++
			if last, ok := ent.Applied[ev.Partition]; !ok || ev.Offset > last {
				ent.Applied[ev.Partition] = ev.Offset
			}
			if logged {
				r.rows.add(ent.State, ev)
			}
		}
		delete(byKey, k) // applied: its events can go
		if len(ent.Applied) == 0 {
			// No event passed the view's filter: as in ingest, the entity
			// has no state, and serve answers NOT_FOUND, not a zero count.
			continue
		}
		b.Entities[k] = ent
	}
	r.res.Entities += len(b.Entities)
	if r.rows != nil {
		// Before the states: a rerun skips the rows of the slots written.
		if err := r.rows.write(ctx, lastSlot); err != nil {
			return err
		}
		r.res.Rows = r.rows.written
	}
	return publish(b)
}

// CheckLog returns an error matching ErrNoEventLog, naming the source and
// the store, when the offline store holds no event of src: most likely the
// wrong store. Run replays such a log into nothing, as ingest needs for a
// source with no events yet; backfill replay calls CheckLog before it
// writes anything (see the package comment). A log whose events all lie
// outside the replay's time bounds passes: the store is the right one.
func CheckLog(ctx context.Context, off *offline.Dir, src *features.Source) error {
	marks, err := LogMarks(ctx, off, src)
	if err != nil {
		return err
	}
	if len(marks) == 0 {
		return fmt.Errorf("%w of source %s in offline store %s", ErrNoEventLog, src.Name, off)
	}
	return nil
}

// LogMarks returns the high-water mark of each partition of src's topic in
// its event log: the last offset of its newest complete batch.
func LogMarks(ctx context.Context, off *offline.Dir, src *features.Source) (map[int32]int64, error) {
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
	// To and Rows are a catch-up's Config.To and Config.Rows, recorded
	// before it writes anything; empty, no catch-up from Covered has begun.
	To   map[int32]int64
	Rows string
}

type markerJSON struct {
	Covered map[string]int64 `json:"covered"` // source partition → last offset replayed
	Since   time.Time        `json:"since,omitzero"`
	To      map[string]int64 `json:"to,omitempty"`
	Rows    string           `json:"rows,omitempty"`
	At      time.Time        `json:"at"`
}

// WriteMarker records a version's marker, replacing any earlier one
// atomically. Write a pending one before creating a version's changelog,
// so that a crash in between cannot leave a changelog that looks computed.
func WriteMarker(ctx context.Context, off *offline.Dir, v *features.View, m Marker) error {
	j := markerJSON{Covered: partitionKeys(m.Covered), Since: m.Since.UTC(), To: partitionKeys(m.To), Rows: m.Rows, At: time.Now().UTC()}
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
	m := Marker{Since: j.Since, Rows: j.Rows}
	if m.Covered, err = partitions(j.Covered); err == nil {
		m.To, err = partitions(j.To)
	}
	if err != nil {
		return Marker{}, false, fmt.Errorf("replay marker %s: %w", markerName(v), err)
	}
	return m, true, nil
}

// partitionKeys returns offsets by partition with the partitions as JSON
// keys.
func partitionKeys(offsets map[int32]int64) map[string]int64 {
	out := make(map[string]int64, len(offsets))
	for p, o := range offsets {
		out[strconv.Itoa(int(p))] = o
	}
	return out
}

// partitions undoes partitionKeys.
func partitions(offsets map[string]int64) (map[int32]int64, error) {
	out := make(map[int32]int64, len(offsets))
	for p, o := range offsets {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("partition %q", p)
		}
		out[int32(n)] = o
	}
	return out, nil
}

// RemoveMarker removes a version's marker once ingest has taken over.
func RemoveMarker(ctx context.Context, off *offline.Dir, v *features.View) error {
	return off.RemoveFile(ctx, markerName(v))
}
