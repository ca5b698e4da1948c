package serve

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/jsonenc"
	"github.com/quiver-ml/quiver/store/online"
)

// table is one view version as serve reads it.
type table struct {
	id       online.Table
	view     *features.View
	engine   *features.Engine
	keys     []string        // the entity's join keys, in order
	keyTypes []features.Type // their types in the view's source
	lookups  prometheus.Counter
}

// plan is what a request for a list of features, or a feature service,
// needs: the tables to read and where each output comes from.
type plan struct {
	names   []string // output feature names: resolved references, then on-demand features
	columns []string // the same as full feature names: <view>__<feature>, then on-demand features
	tables  []*table
	outputs []output             // one per resolved reference
	service *features.Service    // with on-demand features; nil for a list
	keys    map[string]keyColumn // join key → what it needs
	context []string             // request_context keys the on-demand features need
}

// entity returns the join keys of the entity of the plan's first feature.
func (p *plan) entity() []string { return p.tables[p.outputs[0].table].keys }

type output struct {
	table   int // index in plan.tables
	feature int // index in the view's features
}

type keyColumn struct {
	typ  features.Type
	used string // a view version that needs it, for messages
}

// newPlan resolves feature references; every unknown one, and every one
// listed again, is reported.
func (s *Server) newPlan(refs []string, svc *features.Service) (*plan, *planError) {
	p := &plan{service: svc, keys: map[string]keyColumn{}}
	var unknown, problems []string
	var listed []string // the references of p.names, as given
	for _, r := range refs {
		ref, err := features.ParseFeatureRef(r)
		if err != nil {
			unknown = append(unknown, err.Error())
			continue
		}
		v, f, err := s.defs.Resolve(ref)
		if err != nil {
			unknown = append(unknown, strings.TrimPrefix(err.Error(), features.ErrUnknownFeature.Error()+": "))
			continue
		}
		name := v.Ref() + ":" + f.Name
		if j := slices.Index(p.names, name); j >= 0 {
			if r == listed[j] {
				problems = append(problems, r+" is listed twice")
			} else {
				problems = append(problems, fmt.Sprintf("%s is %s, already listed as %s", r, name, listed[j]))
			}
			continue
		}
		listed = append(listed, r)
		t := s.tables[online.TableOf(v)]
		i := slices.Index(p.tables, t)
		if i < 0 {
			i = len(p.tables)
			p.tables = append(p.tables, t)
		}
		p.outputs = append(p.outputs, output{table: i, feature: slices.Index(v.Features, f)})
		p.names = append(p.names, name)
		p.columns = append(p.columns, features.FeatureRef{View: v.Name, Feature: f.Name}.Column())
	}
	for _, t := range p.tables {
		for i, k := range t.keys {
			if _, ok := p.keys[k]; !ok {
				p.keys[k] = keyColumn{typ: t.keyTypes[i], used: t.id.String()}
			}
		}
	}
	if len(unknown) > 0 {
		// As many as fit the bound of a problem: every one of any request
		// a person wrote.
		problems = append([]string{"unknown features: " + listSome(unknown, 100, maxProblemBytes-50)}, problems...)
	}
	if len(problems) > 0 {
		return nil, &planError{problems: problems, known: p}
	}
	if svc != nil {
		for _, o := range svc.OnDemand {
			p.names = append(p.names, o.Name)
			p.columns = append(p.columns, o.Name)
			for _, k := range o.RequestKeys() {
				if !slices.Contains(p.context, k) {
					p.context = append(p.context, k)
				}
			}
		}
	}
	return p, nil
}

// planError is newPlan's error: the list's problems, and the plan of the
// features it could resolve, against which the entities are checked too.
type planError struct {
	problems []string
	known    *plan
}

func (e *planError) Error() string { return joinProblems(e.problems) }

// refuse answers a request whose feature list has problems, with those of
// its entities too.
func (e *planError) refuse(req *request) error {
	ps := e.problems
	if len(e.known.tables) > 0 {
		ps = append(slices.Clip(ps), e.known.problems(req)...)
	}
	return badRequest("%s", joinProblems(ps))
}

// check checks a request's entities and context against the plan, and
// against the plans also, if any: then it needs the join keys and context
// of them all, and accepts them.
func (p *plan) check(req *request, also ...*plan) error {
	if ps := p.problems(req, also...); len(ps) > 0 {
		return badRequest("%s", joinProblems(ps))
	}
	return nil
}

// problems lists what check refuses.
func (p *plan) problems(req *request, also ...*plan) []string {
	keys := p.keys
	if len(also) > 0 {
		keys = maps.Clone(p.keys)
		for _, o := range also {
			for k, c := range o.keys {
				if _, ok := keys[k]; !ok {
					keys[k] = c
				}
			}
		}
	}
	names := slices.Sorted(maps.Keys(keys))
	var problems []string
	given := map[string]bool{}
	for _, c := range req.entities {
		given[c.name] = true
		k, ok := keys[c.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("entities.%s is not a join key of the requested features (they need %s)", c.name, strings.Join(names, ", ")))
			continue
		}
		for i, v := range c.values {
			if v.Type() != k.typ {
				problems = append(problems, fmt.Sprintf("entities.%s[%d] must be %s, like the join key of %s", c.name, i, article(k.typ), k.used))
				break
			}
		}
	}
	for _, k := range names {
		if !given[k] {
			problems = append(problems, fmt.Sprintf("join key %s is missing from entities (%s needs it)", k, keys[k].used))
		}
	}
	if req.fullNames {
		for i, c := range p.columns {
			if j := slices.Index(p.columns[:i], c); j >= 0 {
				problems = append(problems, fmt.Sprintf("full_feature_names: %s and %s would both be %s: request one version of a view", p.names[j], p.names[i], c))
			}
		}
	}
	var missing []string
	for _, q := range append([]*plan{p}, also...) {
		for _, k := range q.context {
			if !req.hasContext(k) && !slices.Contains(missing, k) {
				missing = append(missing, k)
				problems = append(problems, fmt.Sprintf("request_context.%s is missing (an on-demand feature of %s reads it)", k, q.service.Name))
			}
		}
	}
	return problems
}

func article(t features.Type) string {
	if t == features.TypeInt {
		return "an integer"
	}
	return "a string"
}

// status is a value's Feast status.
type status uint8

const (
	statusPresent status = iota
	statusNotFound
	statusOutsideMaxAge
)

var statusNames = [...]string{"PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"}

func (s status) String() string { return statusNames[s] }

// result is a lookup's answer: for each output feature, a value, status
// and event time per entity.
type result struct {
	asOf     int64 // ms
	values   [][]features.Value
	statuses [][]status
	times    [][]int64 // the entity's latest event, ms; 0 when not found
}

// lookup reads and evaluates a planned request. Windows are evaluated at
// as_of, the request's time, except those of an entity with an event later
// than that, evaluated at its latest event: one entity's clock skew never
// moves another's windows. An entity without state (NOT_FOUND, or
// OUTSIDE_MAX_AGE) has null values, as Feast answers, or with empty its
// empty windows' values (Engine.Empty): a model is given what training
// sets hold before an entity's first event.
func (s *Server) lookup(ctx context.Context, req *request, p *plan, empty bool) (*result, error) {
	if err := s.storeReady(ctx); err != nil {
		// A request context of the wrong type is a 400 whatever the
		// store: the client should not retry it.
		if cerr := p.checkContext(req); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	res := &result{asOf: s.now().UnixMilli()}
	states := make([][]*cachedState, len(p.tables))
	notFound := false
	var key []byte
	keyVals := make([]features.Value, 0, 4)
	for ti, t := range p.tables {
		keys := make([]string, req.rows)
		for r := range req.rows {
			keyVals = keyVals[:0]
			for _, k := range t.keys {
				keyVals = append(keyVals, req.column(k).values[r])
			}
			key, _ = online.AppendEntityKey(key[:0], keyVals...) // types are checked
			keys[r] = string(key)
		}
		states[ti] = make([]*cachedState, req.rows)
		hits, misses, err := s.cache.read(ctx, s.store, t.engine, t.id, keys, states[ti])
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", t.id, err)
		}
		s.metrics.cache[0].Add(float64(misses))
		s.metrics.cache[1].Add(float64(hits))
		t.lookups.Add(float64(len(keys)))
		if slices.Contains(states[ti], nil) {
			notFound = true
		}
	}
	// The store's readiness is up to readyEvery old: a Redis that lost its
	// data since then holds no entity, and NOT_FOUND would have a model
	// predict on nulls. An answer with one is given only if the store is
	// ready after the reads (a local call for the Pebble replica).
	if notFound {
		if err := s.storeReadySince(ctx, time.Now()); err != nil {
			return nil, err
		}
	}

	n := len(p.outputs)
	if p.service != nil {
		n += len(p.service.OnDemand)
	}
	res.values = make([][]features.Value, n)
	res.statuses = make([][]status, n)
	res.times = make([][]int64, n)
	for i := range n {
		res.values[i] = make([]features.Value, req.rows)
		res.statuses[i] = make([]status, req.rows)
		res.times[i] = make([]int64, req.rows)
	}
	for ti, t := range p.tables {
		vals := make([]features.Value, len(t.view.Features))
		ttl := t.view.TTL.Milliseconds()
		for r, st := range states[ti] {
			var stat status
			var last int64
			switch {
			case st == nil:
				stat = statusNotFound
			default:
				last, _ = st.state.LastEventTime()
				if ttl > 0 && res.asOf-last > ttl {
					stat = statusOutsideMaxAge
					break
				}
				// An entity with an event later than now (a producer's
				// clock ahead of ours) is evaluated at that event: a
				// window cannot be evaluated before events it holds.
				if err := st.evaluate(t.engine, max(res.asOf, last), vals); err != nil {
					return nil, fmt.Errorf("evaluate %s: %w", t.id, err)
				}
			}
			if stat != statusPresent && empty {
				t.engine.Empty(vals)
			}
			for o, out := range p.outputs {
				if out.table != ti {
					continue
				}
				res.statuses[o][r], res.times[o][r] = stat, last
				if stat == statusPresent || empty {
					res.values[o][r] = vals[out.feature]
				}
			}
		}
	}
	if p.service != nil {
		in := make([]features.Value, len(p.outputs))
		od := make([]features.Value, len(p.service.OnDemand))
		context, setRow := req.rowContext()
		for r := range req.rows {
			setRow(r)
			for o := range p.outputs {
				in[o] = res.values[o][r]
			}
			// A failed expression gives a null, and its status says
			// NOT_FOUND, where the data is to blame (a null input, say);
			// a request context of the wrong type is refused.
			if err := p.service.EvalOnDemand(in, context, od); err != nil {
				if oe := features.RequestBlamed(err); oe != nil {
					return nil, contextError(oe, r, req.rows)
				}
			}
			for j, v := range od {
				o := len(p.outputs) + j
				res.values[o][r] = v
				if v.IsNull() {
					res.statuses[o][r] = statusNotFound
				}
				res.times[o][r] = res.asOf
			}
		}
	}
	for o := range res.statuses {
		for _, st := range res.statuses[o] {
			s.metrics.statuses[st].Inc()
		}
	}
	return res, nil
}

// checkContext evaluates the on-demand features of every entity with their
// features null, as for an entity without state, and returns the error of
// the first whose request context is of the wrong type.
func (p *plan) checkContext(req *request) error {
	if p.service == nil || len(p.service.OnDemand) == 0 {
		return nil
	}
	in := make([]features.Value, len(p.outputs))
	od := make([]features.Value, len(p.service.OnDemand))
	context, setRow := req.rowContext()
	for r := range req.rows {
		setRow(r)
		if err := p.service.EvalOnDemand(in, context, od); err != nil {
			if oe := features.RequestBlamed(err); oe != nil {
				return contextError(oe, r, req.rows)
			}
		}
	}
	return nil
}

func (req *request) column(name string) *column {
	for i := range req.entities {
		if req.entities[i].name == name {
			return &req.entities[i]
		}
	}
	return nil
}

// appendResponse appends the JSON response: entity columns first, then one
// result per output feature.
func appendResponse(b []byte, req *request, p *plan, res *result) []byte {
	b = append(b, `{"metadata":{"feature_names":[`...)
	for i, c := range req.entities {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, c.name)
	}
	names := p.names
	if req.fullNames {
		names = p.columns
	}
	for i, name := range names {
		if i > 0 || len(req.entities) > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, name)
	}
	b = append(b, `],"as_of":`...)
	b = appendTime(b, res.asOf)
	b = append(b, `},"results":[`...)
	for i, c := range req.entities {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"values":[`...)
		for r, v := range c.values {
			if r > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, v)
		}
		b = appendRepeated(b, `],"statuses":[`, `"PRESENT"`, req.rows)
		b = appendRepeated(b, `],"event_timestamps":[`, `"1970-01-01T00:00:00Z"`, req.rows)
		b = append(b, "]}"...)
	}
	var times [2]int // where in b the previous feature's event times are
	for o := range res.values {
		b = append(b, `,{"values":[`...)
		for r, v := range res.values[o] {
			if r > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, v)
		}
		b = append(b, `],"statuses":[`...)
		for r, st := range res.statuses[o] {
			if r > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, statusNames[st]...)
			b = append(b, '"')
		}
		b = append(b, `],"event_timestamps":[`...)
		// A view's features share their entities' event times: formatted
		// once, copied for the view's next features.
		start := len(b)
		if o > 0 && slices.Equal(res.times[o], res.times[o-1]) {
			b = append(b, b[times[0]:times[1]]...)
		} else {
			for r, t := range res.times[o] {
				if r > 0 {
					b = append(b, ',')
				}
				b = appendTime(b, t)
			}
		}
		times = [2]int{start, len(b)}
		b = append(b, "]}"...)
	}
	return append(b, "]}\n"...)
}

func appendRepeated(b []byte, prefix, item string, n int) []byte {
	b = append(b, prefix...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	return b
}

func appendTime(b []byte, ms int64) []byte {
	b = append(b, '"')
	b = time.UnixMilli(ms).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendValue appends a feature value as JSON: timestamps as RFC 3339
// strings, a non-finite float (never computed) as null.
func appendValue(b []byte, v features.Value) []byte {
	switch v.Type() {
	case features.TypeString:
		return jsonenc.AppendString(b, v.Str())
	case features.TypeInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case features.TypeFloat:
		f := v.Float()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case features.TypeBool:
		return strconv.AppendBool(b, v.Bool())
	case features.TypeTimestamp:
		return appendTime(b, v.Int())
	}
	return append(b, "null"...)
}
