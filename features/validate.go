package features

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/parser"
)

// maxTiles bounds a window's tile count, and so the state one entity holds:
// a day at 1s, 30 days at 1m, but not 7 days at 1s.
const maxTiles = 100_000

// MaxStateBytes bounds what one entity's state in a view may take at most:
// a changelog record holds it, its key and its applied offsets, in at most
// online.MaxRecordBytes (8 MiB). Load checks it for what has a fixed worst
// case, distinct-count tiles (distinctTileBytes each), and for the least
// the other windowed features' tiles take (minTileBytes). A view's `last`
// features keep the fields of one event between them (lastSeries), bounded
// by the size of an event; the strings `min` and `max` keep, one per tile,
// are not bounded here.
const MaxStateBytes = 7 << 20

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// finish validates what was decoded, compiles its expressions, and returns
// the definitions or every problem found.
func (d *decoder) finish() (*Definitions, error) {
	defs := d.defs
	if !d.projectSeen && !d.invalidYAML { // a file that did not parse may have declared it
		d.errorf(Pos{File: d.name, Line: 1, Col: 1}, "", "missing required key \"project\"")
	}
	d.checkEntities()
	d.checkSources()
	d.checkViews()
	d.checkServices()
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return defs, nil
}

func (d *decoder) checkName(name string, at Pos, path string) {
	if name != "" && (!nameRE.MatchString(name) || strings.Contains(name, "__")) {
		d.errorf(at, path, "name %q must be lowercase letters, digits and single underscores, starting with a letter", name)
	}
}

// unique checks a definition's name, and that no earlier definition of its
// kind has it.
func (d *decoder) unique(seen map[string]Pos, kind, name string, pos positions, path string) {
	d.checkName(name, pos.of("name"), path+".name")
	if first, dup := seen[name]; dup && name != "" {
		d.errorf(pos.of("name"), path+".name", "%s %q already defined at %s", kind, name, first)
	}
	seen[name] = pos.of("name")
}

func (d *decoder) checkEntities() {
	seen := map[string]Pos{}
	for _, e := range d.defs.Entities {
		path := e.path
		d.unique(seen, "entity", e.Name, e.pos, path)
		if e.pos.ok("join_keys") && len(e.JoinKeys) == 0 {
			d.errorf(e.pos.of("join_keys"), path+".join_keys", "needs at least one join key")
		}
		keys := map[string]bool{}
		for _, k := range e.JoinKeys {
			if keys[k] {
				d.errorf(e.pos.of("join_keys"), path+".join_keys", "join key %q listed twice", k)
			}
			keys[k] = true
		}
	}
}

func (d *decoder) checkSources() {
	seen := map[string]Pos{}
	topics := map[string]*Source{}
	for _, s := range d.defs.Sources {
		path := s.path
		_, dup := seen[s.Name] // an error already
		d.unique(seen, "source", s.Name, s.pos, path)
		// Ingest decodes a topic's records with one source's schema.
		if first := topics[s.Topic]; first != nil && s.Topic != "" && !dup {
			d.errorf(s.pos.of("topic"), path+".topic", "topic %q is already the topic of source %q at %s: a topic has one source", s.Topic, first.Name, first.pos.of("topic"))
		} else if s.Topic != "" {
			topics[s.Topic] = s
		}
		if s.pos.ok("format") && s.Format != "json" {
			d.errorf(s.pos.of("format"), path+".format", "format %q is not supported (want json)", s.Format)
		}
		if s.pos.ok("schema") && len(s.Schema) == 0 {
			d.errorf(s.pos.of("schema"), path+".schema", "needs at least one field")
		}
		if s.EventTime != "" && s.schemaOK() {
			switch i := s.Field(s.EventTime); {
			case s.untyped[s.EventTime]:
			case i < 0:
				d.errorf(s.pos.of("event_time"), path+".event_time", "field %q is not in the schema", s.EventTime)
			case s.Schema[i].Type != TypeTimestamp && s.Schema[i].Type != TypeInt:
				d.errorf(s.pos.of("event_time"), path+".event_time", "field %q is %s; want timestamp or int (epoch milliseconds)", s.EventTime, s.Schema[i].Type)
			}
		}
	}
}

func (d *decoder) checkViews() {
	seen := map[string]Pos{}
	for _, v := range d.defs.Views {
		path := v.path
		d.checkName(v.Name, v.pos.of("name"), path+".name")
		if first, dup := seen[v.Ref()]; dup && v.Name != "" && v.pos.ok("version") {
			d.errorf(v.pos.of("version"), path+".version", "view %s already defined at %s", v.Ref(), first)
		}
		if v.pos.ok("version") {
			seen[v.Ref()] = v.pos.of("version")
		}
		if v.pos.ok("ttl") && v.TTL == 0 {
			d.errorf(v.pos.of("ttl"), path+".ttl", "must be longer than zero; leave it out for states that never expire")
		}
		if v.pos.ok("version") && v.Version < 1 {
			d.errorf(v.pos.of("version"), path+".version", "must be 1 or more, not %d", v.Version)
		}
		ent, src := d.defs.Entity(v.Entity), d.defs.Source(v.Source)
		if v.Entity != "" && ent == nil {
			d.errorf(v.pos.of("entity"), path+".entity", "unknown entity %q", v.Entity)
		}
		if v.Source != "" && src == nil {
			d.errorf(v.pos.of("source"), path+".source", "unknown source %q", v.Source)
		}
		if ent != nil && src != nil && src.schemaOK() {
			for _, k := range ent.JoinKeys {
				switch j := src.Field(k); {
				case src.untyped[k]:
				case j < 0:
					d.errorf(v.pos.of("entity"), path+".entity", "join key %q of entity %q is not a field of source %q", k, ent.Name, src.Name)
				case src.Schema[j].Type != TypeString && src.Schema[j].Type != TypeInt:
					d.errorf(v.pos.of("entity"), path+".entity", "join key %q is %s in source %q; want string or int", k, src.Schema[j].Type, src.Name)
				}
			}
		}
		if v.Filter != "" && src != nil && src.schemaOK() {
			f, err := compileFilter(src, v.Filter)
			if unknown := unknownFields(src, v.Filter); err != nil && len(unknown) > 0 {
				for _, name := range unknown {
					if !src.untyped[name] {
						d.errorf(v.pos.of("filter"), path+".filter", "field %q is not in the schema of source %q%s", name, src.Name, src.suggestField(name))
					}
				}
			} else if err != nil {
				hint := ""
				if strings.Contains(err.Error(), "undeclared reference to 'e'") {
					hint = ": a filter reads the event's fields as e.<field>; e['x'] and 'x' in e are not supported, and has(e.x) tests a missing field"
				}
				d.errorf(v.pos.of("filter"), path+".filter", "%v%s", err, hint)
			}
			v.filter = f
		} else if v.Filter != "" {
			// No schema to check it against: its syntax at least.
			if err := checkCELSyntax(v.Filter); err != nil {
				d.errorf(v.pos.of("filter"), path+".filter", "%v", err)
			}
		}
		if v.pos.ok("features") && len(v.Features) == 0 {
			d.errorf(v.pos.of("features"), path+".features", "needs at least one feature")
		}
		names := map[string]bool{}
		for j, f := range v.Features {
			fpath := fmt.Sprintf("%s.features[%d]", path, j)
			d.checkName(f.Name, f.pos.of("name"), fpath+".name")
			if names[f.Name] && f.Name != "" {
				d.errorf(f.pos.of("name"), fpath+".name", "feature %q defined twice in view %s", f.Name, v.Ref())
			}
			if ent != nil && slices.Contains(ent.JoinKeys, f.Name) {
				// The feature log has a column of each.
				d.errorf(f.pos.of("name"), fpath+".name", "feature %q has the name of a join key of entity %q", f.Name, ent.Name)
			}
			names[f.Name] = true
			d.checkFeature(f, src, fpath)
		}
		if n := distinctTiles(v); n*distinctTileBytes > MaxStateBytes {
			d.errorf(v.pos.of("features"), path+".features",
				"the count_distinct features keep %d tiles: up to %.1f MB of state for a busy entity (%d bytes a tile once it holds thousands of values), more than the %d MiB a state may take; use coarser granularities, or spread them over more views",
				n, float64(n*distinctTileBytes)/1e6, distinctTileBytes, MaxStateBytes>>20)
		}
		if n, size := windowTiles(v); size > MaxStateBytes {
			d.errorf(v.pos.of("features"), path+".features",
				"the windowed features besides count_distinct keep %d tiles: at least %.1f MB of state for a busy entity (an event in every tile), more than the %d MiB a state may take; use coarser granularities, or spread them over more views",
				n, float64(size)/1e6, MaxStateBytes>>20)
		}
	}
}

// minTileBytes is the least a tile of each aggregation takes in a state:
// its index, then a count, a sum and a count, a count and two sums, or a
// value, each a byte at least.
var minTileBytes = map[Agg]int64{AggCount: 2, AggSum: 3, AggAvg: 3, AggStddev: 4, AggMin: 2, AggMax: 2}

// windowTiles is how many tiles the windowed features of v other than
// count_distinct keep at most, and the least they take then.
func windowTiles(v *View) (n, size int64) {
	for _, f := range v.Features {
		if per, ok := minTileBytes[f.Agg]; ok && f.Window > 0 && f.Granularity > 0 {
			k := int64(f.Window / f.Granularity)
			n, size = n+k, size+k*per
		}
	}
	return n, size
}

// distinctTiles is how many tiles the count_distinct features of v keep at
// most: a window's count of granularities, one for a lifetime feature.
func distinctTiles(v *View) int64 {
	var n int64
	for _, f := range v.Features {
		switch {
		case f.Agg != AggCountDistinct:
		case f.Window == 0:
			n++
		case f.Granularity > 0:
			n += int64(f.Window / f.Granularity)
		}
	}
	return n
}

func (d *decoder) checkFeature(f *Feature, src *Source, path string) {
	var want string // the field types the aggregation takes
	switch f.Agg {
	case AggCount:
		if f.pos.ok("field") {
			d.errorf(f.pos.of("field"), path+".field", "count counts events and takes no field")
		}
	case AggSum, AggAvg, AggStddev:
		want = "int or float"
	case AggMin, AggMax:
		want = "int, float or timestamp"
	case AggCountDistinct, AggLast:
		want = "any"
	case "":
	default:
		d.errorf(f.pos.of("agg"), path+".agg", "unknown aggregation %q (want count, sum, avg, min, max, stddev, count_distinct or last)", f.Agg)
	}
	if want != "" && f.Field == "" {
		if _, ok := f.pos["field"]; !ok {
			d.errorf(f.pos.of(""), path, "%s needs a field", f.Agg)
		}
	}
	if want != "" && f.pos.ok("field") && src != nil && src.schemaOK() {
		switch i := src.Field(f.Field); {
		case src.untyped[f.Field]: // its type is reported; nothing to check against
		case i < 0:
			d.errorf(f.pos.of("field"), path+".field", "field %q is not in the schema of source %q%s", f.Field, src.Name, src.suggestField(f.Field))
		case !(want == "any" || src.Schema[i].Type.numeric() || (src.Schema[i].Type == TypeTimestamp && strings.Contains(want, "timestamp"))):
			d.errorf(f.pos.of("field"), path+".field", "%s needs %s, but field %q is %s", f.Agg, want, f.Field, src.Schema[i].Type)
		}
	}
	d.checkWindow(f, path)
}

func (d *decoder) checkWindow(f *Feature, path string) {
	_, hasWindow := f.pos["window"]
	_, hasGran := f.pos["granularity"]
	if hasWindow && !f.pos.ok("window") || hasGran && !f.pos.ok("granularity") {
		return // reported when decoded
	}
	switch {
	case hasWindow && f.Window == 0:
		d.errorf(f.pos.of("window"), path+".window", "must be longer than zero; leave it out for a lifetime feature")
		return
	case !hasWindow && hasGran:
		d.errorf(f.pos.of("granularity"), path+".granularity", "a lifetime feature (no window) takes no granularity")
		return
	case f.Window == 0:
		return
	case f.Window%time.Millisecond != 0:
		d.errorf(f.pos.of("window"), path+".window", "must be a whole number of milliseconds")
		return
	}
	if !hasGran {
		f.Granularity = f.Window / 60
		if f.Granularity%time.Second != 0 {
			d.errorf(f.pos.of("window"), path+".window", "default granularity %s (window/60) is not a whole number of seconds; set granularity", FormatDuration(f.Granularity))
		}
		return
	}
	switch g := f.Granularity; {
	case g == 0 || g%time.Second != 0:
		d.errorf(f.pos.of("granularity"), path+".granularity", "must be a whole number of seconds, at least 1s")
	case f.Window%g != 0:
		d.errorf(f.pos.of("granularity"), path+".granularity", "%s does not divide the window %s", FormatDuration(g), FormatDuration(f.Window))
	case f.Window/g > maxTiles:
		d.errorf(f.pos.of("granularity"), path+".granularity", "window/granularity is %d tiles; at most %d", f.Window/g, maxTiles)
	}
}

func (d *decoder) checkServices() {
	seen := map[string]Pos{}
	for _, s := range d.defs.Services {
		path := s.path
		d.unique(seen, "feature service", s.Name, s.pos, path)
		if s.pos.ok("features") && len(s.Features) == 0 {
			d.errorf(s.pos.of("features"), path+".features", "needs at least one feature")
		}
		refs := make([]string, len(s.Features))
		s.refs = refs
		types := make([]Type, len(s.Features)) // TypeNull where unknown
		s.placeholders = make([]Value, len(s.Features))
		listed := map[string]string{}  // resolved reference → as first written
		columns := map[string]string{} // training set column → reference
		joinKeys := map[string]bool{}  // of the views' entities
		for j, r := range s.Features {
			refs[j] = r.String()
			fpath := s.refPath[j]
			v, f, err := d.defs.Resolve(r)
			if err != nil {
				d.errorf(s.refPos[j], fpath, "%s", strings.TrimPrefix(err.Error(), ErrUnknownFeature.Error()+": "))
				continue
			}
			if src := d.defs.Source(v.Source); src != nil && (f.Field == "" || src.Field(f.Field) >= 0) {
				types[j] = f.ValueType(src)
				s.placeholders[j] = placeholder(types[j])
			}
			resolved := v.Ref() + ":" + r.Feature
			if first, dup := listed[resolved]; dup {
				if first == refs[j] {
					d.errorf(s.refPos[j], fpath, "%s listed twice", refs[j])
				} else {
					d.errorf(s.refPos[j], fpath, "%s is %s, already listed as %s", refs[j], resolved, first)
				}
				continue
			}
			listed[resolved] = refs[j]
			col := FeatureRef{View: v.Name, Feature: r.Feature}.Column()
			if first, dup := columns[col]; dup {
				d.errorf(s.refPos[j], fpath, "%s and %s would both be column %s of a training set: list one version of a view", first, refs[j], col)
			}
			columns[col] = refs[j]
			if e := d.defs.Entity(v.Entity); e != nil {
				for _, k := range e.JoinKeys {
					joinKeys[k] = true
				}
			}
		}
		names := map[string]bool{}
		for j, o := range s.OnDemand {
			opath := fmt.Sprintf("%s.on_demand[%d]", path, j)
			d.checkName(o.Name, o.pos.of("name"), opath+".name")
			if names[o.Name] && o.Name != "" {
				d.errorf(o.pos.of("name"), opath+".name", "on-demand feature %q defined twice", o.Name)
			}
			names[o.Name] = true
			if joinKeys[o.Name] {
				d.errorf(o.pos.of("name"), opath+".name", "on-demand feature %q has the name of a join key of the service's features", o.Name)
			}
			if o.Expr == "" {
				continue
			}
			prg, err := compileOnDemand(o.Expr, refs, func(key string) (string, bool) {
				r, err := ParseFeatureRef(key)
				if err != nil {
					return "", false
				}
				v, f, err := d.defs.Resolve(r)
				if err != nil {
					return "", false
				}
				as, ok := listed[v.Ref()+":"+f.Name]
				return as, ok
			})
			if err != nil {
				d.errorf(o.pos.of("expr"), opath+".expr", "%v", err)
				continue
			}
			if err := prg.probe(refs, types); err != nil {
				var typed []string
				for _, i := range prg.features {
					typed = append(typed, fmt.Sprintf("f['%s'] is of type %s", refs[i], types[i]))
				}
				if len(prg.named) > 0 {
					typed = append(typed, "request numbers are doubles")
				}
				d.errorf(o.pos.of("expr"), opath+".expr", "fails whatever the request context holds (%s): %v", strings.Join(typed, "; "), err)
				continue
			}
			o.prg = prg
			s.read = append(s.read, prg.features...)
		}
		slices.Sort(s.read)
		s.read = slices.Compact(s.read)
	}
}

// unknownFields returns the fields that a filter reads as e.<field> and the
// source does not declare, once each in order of appearance: CEL itself only
// says "undeclared reference to 'e'".
func unknownFields(src *Source, expr string) []string {
	p, err := parser.NewParser(parser.Macros(parser.AllMacros...))
	if err != nil {
		return nil
	}
	parsed, errs := p.Parse(common.NewTextSource(expr))
	if len(errs.GetErrors()) > 0 {
		return nil
	}
	var unknown []string
	ast.PreOrderVisit(parsed.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.SelectKind {
			return
		}
		sel := e.AsSelect()
		op := sel.Operand()
		if op.Kind() == ast.IdentKind && op.AsIdent() == "e" && src.Field(sel.FieldName()) < 0 && indexOf(unknown, sel.FieldName()) < 0 {
			unknown = append(unknown, sel.FieldName())
		}
	}))
	return unknown
}

// schemaOK reports whether the source's schema was declared and its field
// names decoded, so that fields can be checked against it (less those in
// s.untyped, whose types did not decode).
func (s *Source) schemaOK() bool { return s.untyped != nil && len(s.Schema)+len(s.untyped) > 0 }

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// FormatDuration prints a duration as definitions write it, without zero
// units: 1h, 1h30m, 24m, 1.5s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// suggestField names the field of the source's schema closest to name, or
// lists them: the tail of an unknown field's error.
func (s *Source) suggestField(name string) string {
	if name == "" {
		return ""
	}
	known := map[string]bool{}
	maps.Copy(known, s.untyped) // declared, with a bad type
	for _, f := range s.Schema {
		known[f.Name] = true
	}
	return suggest(name, known)
}
