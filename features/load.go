package features

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads feature definitions from a YAML file, or from every .yaml and .yml
// file below a directory, and validates them. Any problem, in any file, makes
// it return Errors listing all of them with file, line and field.
func Load(path string) (*Definitions, error) {
	files, err := definitionFiles(path)
	if err != nil {
		return nil, err
	}
	d := &decoder{defs: &Definitions{}}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read definitions: %w", err)
		}
		d.file(f, src)
	}
	return d.finish()
}

// Parse reads definitions from one YAML document held in memory; name is used
// in error positions.
func Parse(name string, src []byte) (*Definitions, error) {
	d := &decoder{defs: &Definitions{}}
	d.file(name, src)
	return d.finish()
}

func definitionFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	// WalkDir does not follow a root that is a link to a directory (a
	// release's "current" link, say): it would find no file there. So walk
	// the directory the path resolves to, and name its files under the path
	// as given, which is what errors show.
	root, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Hidden entries are skipped: a Kubernetes ConfigMap mounted as a
		// directory holds each file twice, as name -> ..data/name and in
		// the ..<timestamp> directory ..data points to.
		if p != root && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.Join(path, rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read definitions: no .yaml or .yml files in %s", path)
	}
	return files, nil // WalkDir visits in lexical order
}

// positions records where a definition and each of its keys' values were
// written. A key whose value could not be decoded is also recorded as key+"!",
// so that validation does not report the same problem again.
type positions map[string]Pos

// of returns the position of key's value, or of the definition itself.
func (p positions) of(key string) Pos {
	if q, ok := p[key]; ok {
		return q
	}
	return p[""]
}

// ok reports whether key was given and its value decoded without error.
func (p positions) ok(key string) bool {
	_, given := p[key]
	_, bad := p[key+"!"]
	return given && !bad
}

// decoder turns YAML nodes into definitions, collecting every problem.
type decoder struct {
	defs        *Definitions
	errs        Errors
	name        string // current file
	projectPos  Pos
	projectSeen bool
	invalidYAML bool // some file could not be parsed
	steps       int  // nodes decoded in the current document
	maxSteps    int
}

// maxAliasNodes bounds how many nodes aliases may add to a document: without
// a bound, a few kilobytes of aliases to lists of aliases expand into
// millions of definitions (yaml.v3 has the same guard, but only when it
// decodes into Go values, not into nodes).
const maxAliasNodes = 100_000

// step counts one node decoded, and reports whether it is within the
// document's budget; the first node past it is an error.
func (d *decoder) step(n *yaml.Node) bool {
	d.steps++
	if d.steps == d.maxSteps+1 {
		d.errorf(d.pos(n), "", "aliases expand the document to more than %d nodes", d.maxSteps)
	}
	return d.steps <= d.maxSteps
}

// countNodes returns the number of nodes written in a document, not following
// aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, m := range n.Content {
		c += countNodes(m)
	}
	return c
}

func (d *decoder) pos(n *yaml.Node) Pos { return Pos{File: d.name, Line: n.Line, Col: n.Column} }

func (d *decoder) errorf(at Pos, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: at, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (d *decoder) file(name string, src []byte) {
	d.name = name
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			at := Pos{File: name, Line: 1, Col: 1}
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				at.Line, _ = strconv.Atoi(m[1])
				msg = strings.TrimPrefix(err.Error(), m[0])
				at.Line, at.Col = syntaxErrorAt(src, max(1, at.Line), msg)
			} else if i := problemAt(src, msg); i >= 0 {
				at.Line = 1 + bytes.Count(src[:i], []byte("\n"))
				at.Col = 1 + utf8.RuneCount(src[bytes.LastIndexByte(src[:i], '\n')+1:i])
			}
			d.errorf(at, "", "invalid YAML: %s", msg)
			d.invalidYAML = true
			return
		}
		if len(doc.Content) == 1 && !isEmpty(doc.Content[0]) {
			d.steps, d.maxSteps = 0, countNodes(&doc)+maxAliasNodes
			d.document(doc.Content[0])
		}
	}
}

// syntaxErrorAt returns the line and column of a YAML syntax error whose
// message, msg, the parser put at line from. The parser names the line of
// the construct the error is in (the start of a list, say), not that of the
// problem, which is at or after it: the problem's line is the first whose
// end, with the lines before it, fails to parse with the same message. Its
// column is that of the line's first character but spaces (a tab, which
// YAML does not indent with, is the problem then).
func syntaxErrorAt(src []byte, from int, msg string) (line, col int) {
	line, col = from, 1
	end := 0 // past the line
	for l := 1; l < from+maxSyntaxLines && end < len(src); l++ {
		start := end
		if i := bytes.IndexByte(src[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(src)
		}
		if l < from || !failsWith(src[:end], msg) {
			continue
		}
		text := src[start:end]
		return l, 1 + utf8.RuneCount(text[:len(text)-len(bytes.TrimLeft(text, " "))])
	}
	return line, col
}

// maxSyntaxLines bounds the lines syntaxErrorAt parses again.
const maxSyntaxLines = 200

// failsWith reports whether src fails to parse as YAML with the message msg.
func failsWith(src []byte, msg string) bool {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == nil {
			continue
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return strings.TrimPrefix(err.Error(), m[0]) == msg
		}
		return false
	}
}

// problemAt returns the offset in src of what a YAML error that names no
// line is about, or -1: the parser gives a line to syntax errors only.
func problemAt(src []byte, msg string) int {
	switch {
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		for i := 0; ; {
			j := bytes.Index(src[i:], []byte("*"+name))
			if j < 0 {
				return -1
			}
			i += j
			if end := i + 1 + len(name); end == len(src) || !isAnchorByte(src[end]) {
				return i
			}
			i++
		}
	case strings.Contains(msg, "control characters"):
		return bytes.IndexFunc(src, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f })
	case strings.Contains(msg, "UTF-8"):
		for i := 0; i < len(src); {
			r, n := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && n == 1 {
				return i
			}
			i += n
		}
	}
	return -1
}

// isAnchorByte reports whether b may be part of an anchor's name.
func isAnchorByte(b byte) bool {
	return b > ' ' && !strings.ContainsRune(",[]{}", rune(b))
}

func (d *decoder) document(n *yaml.Node) {
	d.mapping(n, "", map[string]func(*yaml.Node, string){
		"project": func(v *yaml.Node, path string) {
			p, ok := d.str(v, path)
			switch {
			case !ok:
			case d.projectSeen && p != d.defs.Project:
				d.errorf(d.pos(v), path, "project %q differs from %q declared at %s", p, d.defs.Project, d.projectPos)
			default:
				d.defs.Project, d.projectPos, d.projectSeen = p, d.pos(v), true
			}
		},
		"entities": func(v *yaml.Node, path string) {
			d.seq(v, path, func(item *yaml.Node, path string) { d.defs.Entities = append(d.defs.Entities, d.entity(item, path)) })
		},
		"sources": func(v *yaml.Node, path string) {
			d.seq(v, path, func(item *yaml.Node, path string) { d.defs.Sources = append(d.defs.Sources, d.source(item, path)) })
		},
		"feature_views": func(v *yaml.Node, path string) {
			d.seq(v, path, func(item *yaml.Node, path string) { d.defs.Views = append(d.defs.Views, d.view(item, path)) })
		},
		"feature_services": func(v *yaml.Node, path string) {
			d.seq(v, path, func(item *yaml.Node, path string) { d.defs.Services = append(d.defs.Services, d.service(item, path)) })
		},
	})
}

func (d *decoder) entity(n *yaml.Node, path string) *Entity {
	e := &Entity{path: path}
	e.pos = d.mapping(n, path, map[string]func(*yaml.Node, string){
		"name":      func(v *yaml.Node, p string) { e.Name, _ = d.str(v, p) },
		"join_keys": func(v *yaml.Node, p string) { e.JoinKeys = d.strs(v, p) },
	}, "name", "join_keys")
	return e
}

func (d *decoder) source(n *yaml.Node, path string) *Source {
	s := &Source{Format: "json", AllowedLateness: time.Hour, path: path}
	s.pos = d.mapping(n, path, map[string]func(*yaml.Node, string){
		"name":             func(v *yaml.Node, p string) { s.Name, _ = d.str(v, p) },
		"topic":            func(v *yaml.Node, p string) { s.Topic, _ = d.str(v, p) },
		"format":           func(v *yaml.Node, p string) { s.Format, _ = d.str(v, p) },
		"event_time":       func(v *yaml.Node, p string) { s.EventTime, _ = d.str(v, p) },
		"allowed_lateness": func(v *yaml.Node, p string) { s.AllowedLateness, _ = d.duration(v, p) },
		"schema":           func(v *yaml.Node, p string) { s.Schema, s.untyped = d.schema(v, p) },
	}, "name", "topic", "event_time", "schema")
	return s
}

// logColumns are the columns the offline event log writes besides a
// source's fields (store/offline's ColEventTime and the others): no field
// may have their names.
var logColumns = []string{"_event_time", "_topic", "_partition", "_offset"}

// schema decodes a source's fields. untyped holds the names of fields
// whose type did not decode (reported here), so that checks against the
// schema go on for the other fields; it is nil if a field's name could not
// be read either, and nothing can be checked against the schema.
func (d *decoder) schema(n *yaml.Node, path string) (fields []Field, untyped map[string]bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(d.pos(n), path, "must be a mapping of field name to type, not %s", describe(n))
		return nil, nil
	}
	untyped = map[string]bool{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content) && d.step(n.Content[i]); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := d.str(k, path)
		if !ok {
			untyped = nil
			continue
		}
		p := path + "." + name
		if name == "" || slices.Contains(logColumns, name) || strings.ContainsAny(name, ",\x00") {
			what := "is empty"
			switch {
			case slices.Contains(logColumns, name):
				what = "is a column the offline event log adds to every source"
			case name != "":
				what = "holds a comma or NUL, which no column of the offline event log may"
			}
			d.errorf(d.pos(k), p, "field name %q %s", name, what)
			if untyped != nil {
				untyped[name] = true // its uses are not errors of their own
			}
			continue
		}
		if seen[name] {
			d.errorf(d.pos(k), p, "field declared twice")
			continue
		}
		seen[name] = true
		ts, ok := d.str(v, p)
		if !ok {
			if untyped != nil {
				untyped[name] = true
			}
			continue
		}
		t, ok := parseType(ts)
		if !ok {
			d.errorf(d.pos(v), p, "unknown type %q (want string, int, float, bool or timestamp)", ts)
			if untyped != nil {
				untyped[name] = true
			}
			continue
		}
		fields = append(fields, Field{Name: name, Type: t})
	}
	return fields, untyped
}

func (d *decoder) view(n *yaml.Node, path string) *View {
	v := &View{path: path}
	v.pos = d.mapping(n, path, map[string]func(*yaml.Node, string){
		"name":    func(x *yaml.Node, p string) { v.Name, _ = d.str(x, p) },
		"version": func(x *yaml.Node, p string) { v.Version, _ = d.int(x, p) },
		"entity":  func(x *yaml.Node, p string) { v.Entity, _ = d.str(x, p) },
		"source":  func(x *yaml.Node, p string) { v.Source, _ = d.str(x, p) },
		"filter":  func(x *yaml.Node, p string) { v.Filter, _ = d.str(x, p) },
		"ttl":     func(x *yaml.Node, p string) { v.TTL, _ = d.duration(x, p) },
		"features": func(x *yaml.Node, p string) {
			d.seq(x, p, func(item *yaml.Node, p string) { v.Features = append(v.Features, d.feature(item, p)) })
		},
	}, "name", "version", "entity", "source", "features")
	return v
}

func (d *decoder) feature(n *yaml.Node, path string) *Feature {
	f := &Feature{}
	f.pos = d.mapping(n, path, map[string]func(*yaml.Node, string){
		"name":        func(x *yaml.Node, p string) { f.Name, _ = d.str(x, p) },
		"agg":         func(x *yaml.Node, p string) { s, _ := d.str(x, p); f.Agg = Agg(s) },
		"field":       func(x *yaml.Node, p string) { f.Field, _ = d.str(x, p) },
		"window":      func(x *yaml.Node, p string) { f.Window, _ = d.duration(x, p) },
		"granularity": func(x *yaml.Node, p string) { f.Granularity, _ = d.duration(x, p) },
	}, "name", "agg")
	return f
}

func (d *decoder) service(n *yaml.Node, path string) *Service {
	s := &Service{path: path}
	s.pos = d.mapping(n, path, map[string]func(*yaml.Node, string){
		"name": func(x *yaml.Node, p string) { s.Name, _ = d.str(x, p) },
		"features": func(x *yaml.Node, p string) {
			d.seq(x, p, func(item *yaml.Node, p string) {
				raw, ok := d.str(item, p)
				if !ok {
					return
				}
				r, err := ParseFeatureRef(raw)
				if err != nil {
					d.errorf(d.pos(item), p, "%v", err)
					return
				}
				s.Features = append(s.Features, r)
				s.refPos = append(s.refPos, d.pos(resolve(item)))
				s.refPath = append(s.refPath, p)
			})
		},
		"on_demand": func(x *yaml.Node, p string) {
			d.seq(x, p, func(item *yaml.Node, p string) {
				o := &OnDemand{}
				o.pos = d.mapping(item, p, map[string]func(*yaml.Node, string){
					"name": func(x *yaml.Node, p string) { o.Name, _ = d.str(x, p) },
					"expr": func(x *yaml.Node, p string) { o.Expr, _ = d.str(x, p) },
				}, "name", "expr")
				s.OnDemand = append(s.OnDemand, o)
			})
		},
	}, "name", "features")
	return s
}

// mapping decodes a mapping node by calling the field's function for each key,
// and reports keys that are unknown, repeated or missing. It returns the
// positions of the node and of each key's value.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string), required ...string) positions {
	n = resolve(n)
	pos := positions{"": d.pos(n)}
	if n.Kind != yaml.MappingNode {
		d.errorf(d.pos(n), path, "must be a mapping, not %s", describe(n))
		return pos
	}
	merged := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.step(n.Content[i]) {
			return pos
		}
		k, v := resolve(n.Content[i]), n.Content[i+1]
		key := k.Value
		p := join(path, key)
		set, known := fields[key]
		switch {
		case k.Tag == "!!merge":
			d.errorf(d.pos(k), path, "YAML merge keys (<<) are not supported: write the keys out, or give a whole node an anchor and use its alias")
			merged = true // the keys it would have given are not missing too
		case k.Kind != yaml.ScalarNode || !known:
			d.errorf(d.pos(k), p, "unknown key %q%s", key, suggest(key, fields))
		case pos[key] != Pos{}:
			d.errorf(d.pos(k), p, "key repeated (first at line %d)", pos[key].Line)
		default:
			pos[key] = d.pos(resolve(v))
			errs := len(d.errs)
			set(v, p)
			if len(d.errs) > errs {
				pos[key+"!"] = pos[key]
			}
		}
	}
	for _, r := range required {
		at, ok := pos[r]
		switch v := d.value(n, r); {
		case !ok && merged:
		case !ok:
			d.errorf(d.pos(n), path, "missing required key %q", r)
		case v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value == "":
			d.errorf(at, join(path, r), "must not be empty")
		}
	}
	return pos
}

// value returns the value of key in the mapping n, resolved, or an empty
// node.
func (d *decoder) value(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if resolve(n.Content[i]).Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return &yaml.Node{}
}

func (d *decoder) seq(n *yaml.Node, path string, each func(*yaml.Node, string)) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(d.pos(n), path, "must be a list, not %s", describe(n))
		return
	}
	for i, item := range n.Content {
		if !d.step(item) {
			return
		}
		each(item, fmt.Sprintf("%s[%d]", path, i))
	}
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errorf(d.pos(n), path, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) strs(n *yaml.Node, path string) []string {
	var out []string
	d.seq(n, path, func(item *yaml.Node, p string) {
		if s, ok := d.str(item, p); ok {
			out = append(out, s)
		}
	})
	return out
}

func (d *decoder) int(n *yaml.Node, path string) (int, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.errorf(d.pos(n), path, "must be an integer, not %s", describe(n))
		return 0, false
	}
	// YAML integers may be written 0x1f, 0o17, 0b101 or 1_000, as Go's
	// are; a leading 0 is decimal, as YAML 1.2 has it, not octal.
	text := strings.ReplaceAll(n.Value, "_", "")
	base := 10
	if digits := strings.TrimLeft(text, "+-"); len(digits) > 1 && digits[0] == '0' && strings.ContainsAny(digits[1:2], "xXoObB") {
		base = 0
	}
	i, err := strconv.ParseInt(text, base, strconv.IntSize)
	if err != nil {
		d.errorf(d.pos(n), path, "integer %s is out of range", n.Value)
		return 0, false
	}
	return int(i), true
}

func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	t, err := parseDuration(s)
	if err != nil {
		d.errorf(d.pos(resolve(n)), path, "%v", err)
		return 0, false
	}
	return t, true
}

// parseDuration accepts Go durations ("90s", "1h30m") and whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 106751 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	t, err := time.ParseDuration(s)
	if err != nil || t < 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 15m, 1h or 7d)", s)
	}
	return t, nil
}

// isEmpty reports whether a document holds nothing, like one of only
// comments after a "---".
func isEmpty(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == ""
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the known key closest to an unknown one, if any is close.
func suggest[V any](key string, known map[string]V) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestDist := "", 3
	for _, k := range names {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return " (want one of " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
