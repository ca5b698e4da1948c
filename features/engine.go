package features

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Engine computes one view version's features. It is the only implementation
// of the aggregations of DESIGN §4: ingest, serve and backfill all use it.
// An Engine is safe for concurrent use. A State is not, except that
// Evaluate only reads it: serve shares decoded states between lookups.
type Engine struct {
	view   *View
	source *Source
	filter *filter
	feats  []feature // the state's layout: ordered by feature name
	out    []int     // out[i]: the index in feats of the i-th feature Evaluate writes
	order  []int     // the order Apply takes feats in: by group
	groups int       // windowed features' distinct (granularity, tiles) pairs
	fields []int     // schema indexes Apply reads, sorted
	stamp  [4]byte   // fingerprint prefix (with the feature names if not all), in every state
	empty  []Value   // Evaluate's values over no events
}

type feature struct {
	agg   Agg
	sums  bool  // sum, avg or stddev: values must be within maxMagnitude
	field int   // schema index, or -1 for count
	gran  int64 // granularity in ms; 0 for a lifetime feature
	tiles int64 // tiles per window
	group int   // windowed: its (gran, tiles) pair's number; -1 for a lifetime feature
}

// NewEngine compiles a view of defs. Given feature names, it computes only
// those of the view's features, and Evaluate writes them alone, in the order
// given: each has the values it has in the whole view, since features share
// nothing but the filter and the latest event time. A training set reads no
// more than the features it asks for. The states of such an engine are not
// the view's: DecodeState refuses one of the other.
func NewEngine(defs *Definitions, v *View, only ...string) (*Engine, error) {
	src := defs.Source(v.Source)
	if src == nil {
		return nil, fmt.Errorf("compile view %s: unknown source %q", v.Ref(), v.Source)
	}
	e := &Engine{view: v, source: src, filter: v.filter}
	fp, _ := hex.DecodeString(v.Fingerprint(defs))
	outputs := v.Features
	if len(only) > 0 {
		outputs = make([]*Feature, len(only))
		for i, name := range only {
			if outputs[i] = v.Feature(name); outputs[i] == nil {
				return nil, fmt.Errorf("compile view %s: %w: %s", v.Ref(), ErrUnknownFeature, name)
			}
			if slices.Contains(outputs[:i], outputs[i]) {
				return nil, fmt.Errorf("compile view %s: feature %s named twice", v.Ref(), name)
			}
		}
		sum := sha256.Sum256(fmt.Appendf(fp, "%q", slices.Sorted(slices.Values(only))))
		fp = sum[:]
	}
	copy(e.stamp[:], fp)
	byName := slices.Clone(outputs)
	slices.SortFunc(byName, func(a, b *Feature) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range byName {
		c := feature{agg: f.Agg, field: -1, sums: f.Agg == AggSum || f.Agg == AggAvg || f.Agg == AggStddev}
		if f.Field != "" {
			if c.field = src.Field(f.Field); c.field < 0 {
				return nil, fmt.Errorf("compile view %s: feature %s: unknown field %q", v.Ref(), f.Name, f.Field)
			}
		}
		if f.Window > 0 {
			c.gran, c.tiles = f.Granularity.Milliseconds(), int64(f.Window/f.Granularity)
		}
		e.feats = append(e.feats, c)
	}
	for _, f := range outputs {
		e.out = append(e.out, slices.Index(byName, f))
	}
	// Features of one window and granularity share the tile an event falls
	// in and the first tile kept: Apply computes them once per group.
	type window struct{ gran, tiles int64 }
	var windows []window
	for i := range e.feats {
		f := &e.feats[i]
		f.group = -1
		if f.gran > 0 {
			w := window{f.gran, f.tiles}
			if f.group = slices.Index(windows, w); f.group < 0 {
				f.group, windows = len(windows), append(windows, w)
			}
		}
		e.order = append(e.order, i)
	}
	e.groups = len(windows)
	slices.SortStableFunc(e.order, func(a, b int) int { return cmp.Compare(e.feats[a].group, e.feats[b].group) })
	for _, f := range e.feats {
		if f.field >= 0 {
			e.fields = append(e.fields, f.field)
		}
	}
	if e.filter != nil {
		for _, name := range e.filter.fields {
			e.fields = append(e.fields, src.Field(name))
		}
	}
	slices.Sort(e.fields)
	e.fields = slices.Compact(e.fields)
	e.empty = make([]Value, len(e.out))
	if err := e.Evaluate(e.NewState(), 0, e.empty); err != nil {
		return nil, err
	}
	return e, nil
}

// Empty writes the features' values over no events into out, as Evaluate
// would: DESIGN §4's empty window, 0 for count, sum and count_distinct and
// null for the others. They are an entity's values before its first event
// and once its state expired (past the view's TTL), in training sets and
// in a model's inputs.
func (e *Engine) Empty(out []Value) { copy(out, e.empty) }

// Fields returns the schema indexes of the fields Apply reads, sorted: the
// features' and the filter's. Nulling an event's other fields changes
// nothing Apply does.
func (e *Engine) Fields() []int { return e.fields }

// View returns the view the engine computes.
func (e *Engine) View() *View { return e.view }

// State is one entity's aggregation state for one view version.
type State struct {
	last   int64 // latest applied event time, epoch ms
	any    bool  // whether any event was applied
	series []series
	pruned []int64 // per feature group: the first tile its series keep
}

// NewState returns the empty state of an entity with no events.
func (e *Engine) NewState() *State {
	s := &State{series: make([]series, len(e.feats)), pruned: make([]int64, e.groups)}
	for i, f := range e.feats {
		s.series[i] = newSeries(f.agg)
	}
	for g := range s.pruned {
		s.pruned[g] = math.MinInt64
	}
	return s
}

// LastEventTime returns the time of the latest event applied to s, and false
// if there was none.
func (s *State) LastEventTime() (int64, bool) { return s.last, s.any }

// Apply adds one event to an entity's state. It reports whether the event
// passed the view's filter. An event whose fields do not match the source
// schema, or whose filter cannot be evaluated, is an error and changes nothing.
//
// Windowed features forget tiles that have slid out of every window ending at
// or after the latest event, and ignore events that fall before them.
func (e *Engine) Apply(s *State, ev *Event) (bool, error) {
	if err := e.check(ev); err != nil {
		return false, err
	}
	if e.filter != nil {
		if ok, err := e.filter.match(ev); err != nil || !ok {
			return false, err
		}
	}
	if !s.any || ev.Time > s.last {
		s.last, s.any = ev.Time, true
	}
	o := order{time: ev.Time, partition: ev.Partition, offset: ev.Offset}
	// Lifetime features, group -1, come first: tile 0, never late, never
	// pruned.
	group, tile, prune, late := -1, int64(0), false, false
	for _, i := range e.order {
		f := &e.feats[i]
		if f.group != group { // the first of a group: order keeps them together
			group = f.group
			tile = floorDiv(ev.Time, f.gran)
			lo := floorDiv(s.last, f.gran) - f.tiles + 1
			// A group's series hold no tile below the lowest they kept and
			// are given none: they need pruning only when it moves.
			if late = tile < lo; !late {
				prune = lo > s.pruned[group]
				s.pruned[group] = lo
			}
		}
		if late {
			continue
		}
		if prune {
			s.series[i].prune(s.pruned[group])
		}
		v := Null
		if f.field >= 0 {
			v = ev.Fields[f.field]
			if v.typ == TypeFloat && v.num == 1<<63 {
				v = Float(0) // -0: so that min, max and sums cannot depend on arrival order
			}
		}
		s.series[i].add(tile, v, o)
	}
	return true, nil
}

// check verifies that the fields the view reads have their declared types,
// and that numbers are in the range exact sums accept.
func (e *Engine) check(ev *Event) error {
	if len(ev.Fields) != len(e.source.Schema) {
		return fmt.Errorf("apply event: %d fields, source %s declares %d", len(ev.Fields), e.source.Name, len(e.source.Schema))
	}
	for _, f := range e.fields {
		if v, typ := ev.Fields[f], e.source.Schema[f].Type; !v.IsNull() && v.typ != typ {
			return fmt.Errorf("apply event: field %s is %s, declared %s", e.source.Schema[f].Name, v.typ, typ)
		}
	}
	for i := range e.feats {
		f := &e.feats[i]
		if f.field < 0 {
			continue
		}
		if v := ev.Fields[f.field]; v.typ == TypeFloat && !(math.Abs(v.Float()) <= maxMagnitude) && (f.sums || math.IsNaN(v.Float())) {
			return fmt.Errorf("apply event: field %s: %v is out of range (|x| ≤ %g)", e.source.Schema[f.field].Name, v.Float(), maxMagnitude)
		}
	}
	return nil
}

// Evaluate writes the view's features as of time t (epoch ms) into out, in
// the view's feature order (or NewEngine's); out must have one element per
// feature. A windowed feature covers the events whose tile is one of the
// window's tiles ending with t's tile (DESIGN §4); state holds no event
// later than its latest, so t must not be earlier than that
// (ErrEvaluateBeforeLastEvent).
func (e *Engine) Evaluate(s *State, t int64, out []Value) error {
	if len(out) != len(e.out) {
		return fmt.Errorf("evaluate view %s: out has %d elements, want %d", e.view.Ref(), len(out), len(e.out))
	}
	if s.any && t < s.last {
		return fmt.Errorf("%w: view %s at %d, latest event %d", ErrEvaluateBeforeLastEvent, e.view.Ref(), t, s.last)
	}
	for i, j := range e.out {
		f := &e.feats[j]
		lo := int64(math.MinInt64)
		if f.gran > 0 {
			lo = floorDiv(t, f.gran) - f.tiles + 1
		}
		out[i] = s.series[j].value(lo)
	}
	return nil
}

// Span returns the times [from, until) around t at which Evaluate gives
// any state the same values as at t (those not before the state's latest
// event: Evaluate refuses earlier times): a window moves only when t
// crosses a tile boundary of its granularity, and a lifetime feature never
// does. A view without windowed features gives every time; t must be less
// than math.MaxInt64.
func (e *Engine) Span(t int64) (from, until int64) {
	from, until = math.MinInt64, math.MaxInt64
	for i := range e.feats {
		g := e.feats[i].gran
		if g == 0 {
			continue
		}
		tile := floorDiv(t, g)
		if tile >= math.MinInt64/g { // else the tile starts before any time
			from = max(from, tile*g)
		}
		if tile < math.MaxInt64/g {
			until = min(until, (tile+1)*g)
		}
	}
	return from, until
}

// stateVersion is the encoding's format version, its first byte. A decoder
// reads every version it has ever written.
const stateVersion = 1

// AppendState appends the encoding of s to b: a format version byte, a
// fingerprint prefix of the view, the latest event time, then each feature's
// tiles.
func (e *Engine) AppendState(b []byte, s *State) []byte {
	b = append(b, stateVersion)
	b = append(b, e.stamp[:]...)
	if !s.any {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendVarint(b, s.last)
	}
	for _, sr := range s.series {
		b = sr.appendTo(b)
	}
	return b
}

// LastEventTimeOf returns the LastEventTime of the state AppendState
// wrote to b, decoding no more than it needs: what ingest reads of every
// state to find those past their view's TTL.
func (e *Engine) LastEventTimeOf(b []byte) (int64, bool, error) {
	var s State
	err := e.readHead(&reader{b: b}, &s)
	return s.last, s.any, err
}

// readHead reads what AppendState writes before the series: the format
// version, the definition's stamp and the latest event time.
func (e *Engine) readHead(r *reader, s *State) error {
	if v := r.byte(); r.err == nil && v != stateVersion {
		return fmt.Errorf("%w: unknown format version %d", ErrCorruptState, v)
	}
	if stamp := r.bytes(len(e.stamp)); r.err == nil && string(stamp) != string(e.stamp[:]) {
		return fmt.Errorf("%w: view %s", ErrStateMismatch, e.view.Ref())
	}
	switch r.byte() {
	case 0:
	case 1:
		s.last, s.any = r.varint(), true
	default:
		r.fail("bad flag")
	}
	return r.err
}

// DecodeState decodes a state written by AppendState. It fails with
// ErrCorruptState on malformed input and ErrStateMismatch for a state of
// another definition of the view.
func (e *Engine) DecodeState(b []byte) (*State, error) {
	r := &reader{b: b}
	s := e.NewState()
	if err := e.readHead(r, s); err != nil {
		return nil, err
	}
	for _, sr := range s.series {
		sr.readFrom(r)
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
