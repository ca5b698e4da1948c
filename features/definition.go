package features

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Definitions is a validated set of feature definitions: what Load returns.
type Definitions struct {
	Project  string
	Entities []*Entity
	Sources  []*Source
	Views    []*View
	Services []*Service
}

// Pos is where a definition, or one of its keys, was written.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Entity is what features describe, identified by its join keys in order.
type Entity struct {
	Name     string
	JoinKeys []string
	pos      positions
	path     string // in its file: entities[i]
}

// Source is a Kafka topic of JSON events with a declared schema.
type Source struct {
	Name            string
	Topic           string
	Format          string        // "json"
	EventTime       string        // the schema field holding the event time
	AllowedLateness time.Duration // default 1h
	Schema          []Field       // in declared order
	pos             positions
	path            string          // in its file: sources[i]
	untyped         map[string]bool // fields declared with a type that did not decode
}

// Field is one declared field of a source's events.
type Field struct {
	Name string
	Type Type
}

// Field returns the index of the named schema field, or -1.
func (s *Source) Field(name string) int {
	for i, f := range s.Schema {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// View is one version of a feature view: features of one entity computed from
// one source.
type View struct {
	Name     string
	Version  int
	Entity   string
	Source   string
	Filter   string        // CEL over the event `e`; empty keeps every event
	TTL      time.Duration // how long after its latest event an entity is served; 0: no limit
	Features []*Feature
	pos      positions
	path     string  // in its file: feature_views[i]
	filter   *filter // compiled Filter; nil when empty
}

// Ref returns "name@version".
func (v *View) Ref() string { return v.Name + "@" + strconv.Itoa(v.Version) }

// Feature returns the named feature of the view, or nil.
func (v *View) Feature(name string) *Feature {
	for _, f := range v.Features {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// ValueType is the type of the feature's values, given its view's source:
// int for counts, float for sums, averages and deviations, and the field's
// own type for min, max and last.
func (f *Feature) ValueType(src *Source) Type {
	switch f.Agg {
	case AggCount, AggCountDistinct:
		return TypeInt
	case AggSum, AggAvg, AggStddev:
		return TypeFloat
	}
	if i := src.Field(f.Field); i >= 0 {
		return src.Schema[i].Type
	}
	return TypeNull // no such field: an error of the definitions
}

// Agg names an aggregation.
type Agg string

// The aggregations of DESIGN §4.
const (
	AggCount         Agg = "count"
	AggSum           Agg = "sum"
	AggAvg           Agg = "avg"
	AggMin           Agg = "min"
	AggMax           Agg = "max"
	AggStddev        Agg = "stddev"
	AggCountDistinct Agg = "count_distinct"
	AggLast          Agg = "last"
)

// Feature is one aggregation of a view. Window 0 means lifetime.
type Feature struct {
	Name        string
	Agg         Agg
	Field       string // empty for count
	Window      time.Duration
	Granularity time.Duration // resolved: the declared value or Window/60
	pos         positions
}

// Service is a named, ordered set of features for a model, with on-demand
// features computed from them and the request.
type Service struct {
	Name     string
	Features []FeatureRef
	OnDemand []*OnDemand
	pos      positions
	path     string   // in its file: feature_services[i]
	refPos   []Pos    // of each feature reference
	refPath  []string // of each feature reference: features[i], counting those malformed
	refs     []string // each feature reference as written: the keys of f
	read     []int    // the features its on-demand features read, by index in refs
	// placeholders: a value of each feature's type (null where not
	// known), for telling whether an on-demand feature fails on the
	// request whatever the features' values.
	placeholders []Value
	vars         sync.Pool // of *onDemandVars, for EvalOnDemand
}

// OnDemand is a feature computed at request time by a CEL expression over the
// fetched features `f` (indexed by reference) and the request context `request`.
type OnDemand struct {
	Name string
	Expr string
	pos  positions
	prg  *onDemand
}

// FeatureRef names a feature: view@version:feature. Version 0 means the highest
// defined version.
type FeatureRef struct {
	View    string
	Version int
	Feature string
}

// ParseFeatureRef parses "view@version:feature" or "view:feature".
func ParseFeatureRef(s string) (FeatureRef, error) {
	view, feature, ok := strings.Cut(s, ":")
	if !ok || view == "" || feature == "" {
		return FeatureRef{}, fmt.Errorf("feature reference %q: want view@version:feature or view:feature", s)
	}
	r := FeatureRef{View: view, Feature: feature}
	if name, ver, ok := strings.Cut(view, "@"); ok {
		n, err := strconv.Atoi(ver)
		if err != nil || n < 1 {
			return FeatureRef{}, fmt.Errorf("feature reference %q: version %q is not a positive integer", s, ver)
		}
		r.View, r.Version = name, n
	}
	return r, nil
}

func (r FeatureRef) String() string {
	if r.Version == 0 {
		return r.View + ":" + r.Feature
	}
	return r.View + "@" + strconv.Itoa(r.Version) + ":" + r.Feature
}

// Column is the feature's column in training sets and reference profiles:
// <view>__<feature>, the same for every version of the view.
func (r FeatureRef) Column() string { return r.View + "__" + r.Feature }

// Columns names the service's values in order, as training sets do: its
// features' columns, then its on-demand features.
func (s *Service) Columns() []string {
	cols := make([]string, 0, len(s.Features)+len(s.OnDemand))
	for _, r := range s.Features {
		cols = append(cols, r.Column())
	}
	for _, o := range s.OnDemand {
		cols = append(cols, o.Name)
	}
	return cols
}

// Entity returns the named entity, or nil.
func (d *Definitions) Entity(name string) *Entity {
	for _, e := range d.Entities {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Source returns the named source, or nil.
func (d *Definitions) Source(name string) *Source {
	for _, s := range d.Sources {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// View returns the view with the given name and version; version 0 means the
// highest defined version. It returns nil when there is none.
func (d *Definitions) View(name string, version int) *View {
	var best *View
	for _, v := range d.Views {
		if v.Name != name {
			continue
		}
		if v.Version == version {
			return v
		}
		if version == 0 && (best == nil || v.Version > best.Version) {
			best = v
		}
	}
	return best
}

// Service returns the named feature service, or nil.
func (d *Definitions) Service(name string) *Service {
	for _, s := range d.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Resolve returns the view and feature a reference names, with the version
// made explicit.
func (d *Definitions) Resolve(r FeatureRef) (*View, *Feature, error) {
	v := d.View(r.View, r.Version)
	if v == nil {
		if r.Version != 0 && d.View(r.View, 0) != nil {
			return nil, nil, fmt.Errorf("%w: %s: view %s has no version %d", ErrUnknownFeature, r, r.View, r.Version)
		}
		return nil, nil, fmt.Errorf("%w: %s: no view %s", ErrUnknownFeature, r, r.View)
	}
	f := v.Feature(r.Feature)
	if f == nil {
		return nil, nil, fmt.Errorf("%w: %s: view %s has no feature %s", ErrUnknownFeature, r, v.Ref(), r.Feature)
	}
	return v, f, nil
}
