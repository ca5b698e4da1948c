package features

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"cel.dev/cel-go/parser"
)

// filter is a view's compiled CEL filter. Each schema field is declared as the
// qualified variable e.<field>, so the checker types every reference and
// rejects unknown fields, and evaluation looks fields up without building a map.
type filter struct {
	prg       cel.Program
	native    native         // nil unless the expression has a native form
	index     map[string]int // "e.<field>" → schema index
	canonical string         // the expression re-printed from its syntax tree
	fields    []string       // schema fields it references, sorted
}

func celType(t Type) *cel.Type {
	switch t {
	case TypeString:
		return cel.NullableType(cel.StringType)
	case TypeInt:
		return cel.NullableType(cel.IntType)
	case TypeFloat:
		return cel.NullableType(cel.DoubleType)
	case TypeBool:
		return cel.NullableType(cel.BoolType)
	}
	return cel.TimestampType
}

func compileFilter(src *Source, expr string) (*filter, error) {
	opts := make([]cel.EnvOption, 0, len(src.Schema))
	f := &filter{index: make(map[string]int, len(src.Schema))}
	for i, fd := range src.Schema {
		opts = append(opts, cel.Variable("e."+fd.Name, celType(fd.Type)))
		f.index["e."+fd.Name] = i
	}
	// e.amount > 0 compares a double with an int: as in the CEL of most
	// tools, not an error.
	opts = append(opts, cel.CrossTypeNumericComparisons(true), cel.Macros(cel.GlobalMacro("has", 1, hasField)))
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, err
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, celError(iss, expr)
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be a boolean expression, not %s", checked.OutputType())
	}
	for _, r := range checked.NativeRep().ReferenceMap() {
		if name, ok := strings.CutPrefix(r.Name, "e."); ok && !slices.Contains(f.fields, name) {
			f.fields = append(f.fields, name)
		}
	}
	slices.Sort(f.fields)
	if f.canonical, err = canonicalCEL(env, expr); err != nil {
		return nil, err
	}
	f.native = compileNative(checked.NativeRep(), src, f.index)
	f.prg, err = env.Program(checked)
	return f, err
}

// hasField expands has(e.x), whether the event gave field x, to e.x != null.
// The fields are declared as the variables e.<field>, so there is no e for
// CEL's own presence test to select from. Other arguments expand as in CEL.
func hasField(eh cel.MacroExprFactory, target ast.Expr, args []ast.Expr) (ast.Expr, *cel.Error) {
	if a := args[0]; a.Kind() == ast.SelectKind {
		if op := a.AsSelect().Operand(); op.Kind() == ast.IdentKind && op.AsIdent() == "e" {
			return eh.NewCall(operators.NotEquals, eh.Copy(a), eh.NewLiteral(types.NullValue)), nil
		}
	}
	return parser.MakeHas(eh, target, args)
}

// checkCELSyntax parses an expression, for its syntax errors.
func checkCELSyntax(expr string) error {
	env, err := cel.NewEnv()
	if err != nil {
		return err
	}
	if _, iss := env.Parse(expr); iss.Err() != nil {
		return celError(iss, expr)
	}
	return nil
}

// canonicalCEL re-prints an expression from its syntax tree, so spacing and
// line breaks do not change a fingerprint.
func canonicalCEL(env *cel.Env, expr string) (string, error) {
	parsed, iss := env.Parse(expr)
	if iss.Err() != nil {
		return "", celError(iss, expr)
	}
	n := parsed.NativeRep()
	return parser.Unparse(n.Expr(), n.SourceInfo())
}

// match reports whether the event passes the filter. An expression that
// cannot be evaluated (a null field in a comparison, say) is an error.
func (f *filter) match(ev *Event) (bool, error) {
	if f.native != nil {
		if ok, known := f.native(ev); known {
			return ok, nil
		}
	}
	return f.eval(ev)
}

// eval evaluates the filter with CEL.
func (f *filter) eval(ev *Event) (bool, error) {
	out, _, err := f.prg.Eval(&eventActivation{f: f, ev: ev})
	if err != nil {
		return false, fmt.Errorf("evaluate filter: %w", err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluate filter: result %v is not a boolean", out)
	}
	return bool(b), nil
}

type eventActivation struct {
	f  *filter
	ev *Event
}

func (a *eventActivation) ResolveName(name string) (any, bool) {
	i, ok := a.f.index[name]
	if !ok || i >= len(a.ev.Fields) {
		return nil, false
	}
	return celValue(a.ev.Fields[i]), true
}

func (a *eventActivation) Parent() interpreter.Activation { return nil }

func celValue(v Value) ref.Val {
	switch v.typ {
	case TypeString:
		return types.String(v.str)
	case TypeInt:
		return types.Int(v.Int())
	case TypeFloat:
		return types.Double(v.Float())
	case TypeBool:
		return types.Bool(v.Bool())
	case TypeTimestamp:
		return types.Timestamp{Time: v.Time()}
	}
	return types.NullValue
}

// fromCEL converts a CEL result to a Value; only scalars are features.
func fromCEL(v ref.Val) (Value, error) {
	switch x := v.(type) {
	case types.String:
		return String(string(x)), nil
	case types.Int:
		return Int(int64(x)), nil
	case types.Uint:
		if x > math.MaxInt64 {
			return Null, fmt.Errorf("result %du is past the largest int, %d", uint64(x), int64(math.MaxInt64))
		}
		return Int(int64(x)), nil
	case types.Double:
		return Float(float64(x)), nil
	case types.Bool:
		return Bool(bool(x)), nil
	case types.Timestamp:
		return Timestamp(x.UnixMilli()), nil
	case types.Null:
		return Null, nil
	}
	return Null, fmt.Errorf("result of type %s is not a scalar", v.Type())
}

// onDemand is a compiled on-demand feature.
type onDemand struct {
	prg         cel.Program
	features    []int    // the features it reads, by index in the service's references
	requestKeys []string // read from the request context, sorted
	named       []string // every request-context key it names, has() tests too, sorted
	typ         Type     // of the result, as checked; TypeNull when dynamic
}

var onDemandEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("f", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
	)
})

// compileOnDemand compiles an on-demand expression and checks that it reads
// only the service's features, by constant reference as listed in refs:
// f['view@1:feature']. listedAs says how the service lists the feature a
// reference names, if it does.
func compileOnDemand(expr string, refs []string, listedAs func(string) (string, bool)) (*onDemand, error) {
	env, err := onDemandEnv()
	if err != nil {
		return nil, err
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, celError(iss, expr)
	}
	var problems []string
	var features []int
	indexed := map[int64]bool{} // ids of `f` idents used as f['...']
	ast.PreOrderVisit(checked.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != operators.Index {
			return
		}
		args := e.AsCall().Args()
		if args[0].Kind() != ast.IdentKind || args[0].AsIdent() != "f" {
			return
		}
		indexed[args[0].ID()] = true
		key, ok := constString(args[1])
		switch i := slices.Index(refs, key); {
		case !ok:
			problems = append(problems, "f must be indexed by a constant feature reference, like f['view@1:feature']")
		case i < 0:
			if as, listed := listedAs(key); listed {
				problems = append(problems, fmt.Sprintf("f[%q]: the service lists this feature as %s; index f by the reference as listed", key, as))
			} else {
				problems = append(problems, fmt.Sprintf("f[%q] is not one of the service's features", key))
			}
		default:
			features = append(features, i)
		}
	}))
	ast.PreOrderVisit(checked.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.IdentKind && e.AsIdent() == "f" && !indexed[e.ID()] {
			problems = append(problems, "f may only be indexed, as f['view@1:feature']")
		}
	}))
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("%s", strings.Join(slices.Compact(problems), "; "))
	}
	prg, err := env.Program(checked)
	if err != nil {
		return nil, err
	}
	typ := TypeNull
	switch t := checked.OutputType(); {
	case t.IsExactType(cel.DoubleType):
		typ = TypeFloat
	case t.IsExactType(cel.IntType):
		typ = TypeInt
	case t.IsExactType(cel.StringType):
		typ = TypeString
	case t.IsExactType(cel.BoolType):
		typ = TypeBool
	}
	slices.Sort(features)
	required, named := requestKeys(checked.NativeRep().Expr())
	return &onDemand{prg: prg, features: slices.Compact(features), requestKeys: required, named: named, typ: typ}, nil
}

// isTypeError reports whether an evaluation failed on the types of its
// inputs.
func isTypeError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "no such overload") || strings.HasPrefix(msg, "no matching overload") ||
		strings.HasPrefix(msg, "type conversion error")
}

// probeKinds are the kinds of value a JSON request context holds, as CEL
// reads them.
var probeKinds = []any{1.5, "a", true, []any{1.5}, map[string]any{"a": 1.5}}

// probe returns the type error an expression fails with whatever the
// request context holds, or nil: it is evaluated with a value of each
// feature's type (types, by reference) and, for each request key it names
// (up to three), every kind of JSON value. Such an expression could only
// ever be null.
func (o *onDemand) probe(refs []string, types []Type) error {
	if len(o.named) > 3 {
		return nil
	}
	f := make(map[string]any, len(o.features))
	for _, i := range o.features {
		v := placeholder(types[i])
		if v.IsNull() {
			return nil
		}
		f[refs[i]] = celValue(v)
	}
	request := make(map[string]any, len(o.named))
	vars := map[string]any{"f": f, "request": request}
	var first error
	var try func(k int) bool // whether every combination of the keys from k on fails
	try = func(k int) bool {
		if k == len(o.named) {
			_, err := o.eval(vars)
			if first == nil {
				first = err
			}
			return err != nil && isTypeError(err)
		}
		for _, v := range probeKinds {
			request[o.named[k]] = v
			if !try(k + 1) {
				return false
			}
		}
		return true
	}
	if !try(0) {
		return nil
	}
	return first
}

// requestKeys returns the keys an expression reads from `request` by name
// (request.k or request['k']), except those it tests with has(): those are
// optional; and every key it names.
func requestKeys(root ast.Expr) (required, named []string) {
	read, tested := map[string]bool{}, map[string]bool{}
	ast.PreOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			if op := sel.Operand(); op.Kind() == ast.IdentKind && op.AsIdent() == "request" {
				if sel.IsTestOnly() {
					tested[sel.FieldName()] = true
				} else {
					read[sel.FieldName()] = true
				}
			}
		case ast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != operators.Index {
				return
			}
			args := call.Args()
			if args[0].Kind() == ast.IdentKind && args[0].AsIdent() == "request" {
				if k, ok := constString(args[1]); ok {
					read[k] = true
				}
			}
		}
	}))
	for k := range read {
		if !tested[k] {
			required = append(required, k)
		}
	}
	named = slices.AppendSeq(slices.Collect(maps.Keys(read)), maps.Keys(tested))
	slices.Sort(required)
	slices.Sort(named)
	return required, slices.Compact(named)
}

func constString(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// Type returns the type of the feature's values as the expression checks,
// or TypeNull when it depends on the request (a dynamic value).
func (o *OnDemand) Type() Type { return o.prg.typ }

// RequestKeys returns the request-context keys the expression needs: those it
// reads by name and does not guard with has().
func (o *OnDemand) RequestKeys() []string { return o.prg.requestKeys }

// EvalOnDemand computes the service's on-demand features into out, in
// Service.OnDemand order. values holds the service's features in
// Service.Features order; request is the request context, as decoded from
// JSON. A feature whose expression fails, on a null input say, is Null, and
// the returned error names it; the others are still computed.
func (s *Service) EvalOnDemand(values []Value, request map[string]any, out []Value) error {
	if len(values) != len(s.Features) || len(out) != len(s.OnDemand) {
		return fmt.Errorf("on-demand features of %s: %d values and %d outputs, want %d and %d",
			s.Name, len(values), len(out), len(s.Features), len(s.OnDemand))
	}
	// The maps are reused: every key of f an expression reads is set again
	// (they read only those, by constant keys), and evaluating keeps
	// nothing of them.
	vars, _ := s.vars.Get().(*onDemandVars)
	if vars == nil {
		f := make(map[string]any, len(values))
		vars = &onDemandVars{f: f, vars: map[string]any{"f": f}}
	}
	defer s.vars.Put(vars)
	for _, i := range s.read {
		vars.f[s.refs[i]] = celValue(values[i])
	}
	if request == nil {
		request = map[string]any{}
	}
	vars.vars["request"] = request
	var errs []error
	for i, o := range s.OnDemand {
		v, err := o.prg.eval(vars.vars)
		if err != nil {
			errs = append(errs, &OnDemandError{Feature: o.Name, Request: s.blame(o.prg, values, request, vars, err), Err: err})
		}
		out[i] = v
	}
	vars.vars["request"] = nil // not kept alive by the pool
	return errors.Join(errs...)
}

// OnDemandError is an on-demand feature that could not be computed; its
// value is null.
type OnDemandError struct {
	Feature string
	// Request holds the request-context values to blame, by key: the
	// expression failed on their types (a string where it divides, say)
	// while every key it reads had a value, and would fail with a value of
	// its type in place of each null feature: whatever the entity's data.
	// It is nil when the data is to blame: a null input, a division by
	// zero.
	Request map[string]any
	Err     error
}

func (e *OnDemandError) Error() string {
	return fmt.Sprintf("on-demand feature %s: %v", e.Feature, e.Err)
}
func (e *OnDemandError) Unwrap() error { return e.Err }

// RequestBlamed returns the first of EvalOnDemand's errors that the
// request context is to blame for (OnDemandError.Request), or nil.
func RequestBlamed(err error) *OnDemandError {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if oe, ok := e.(*OnDemandError); ok && oe.Request != nil {
			return oe
		}
	}
	return nil
}

// Blame says which request-context values the feature could not use, each
// key after prefix ("request_context.", say) and its value as JSON:
// `on-demand feature f cannot use request_context.amount = "abc": no such
// overload`. It assumes Request is not nil.
func (e *OnDemandError) Blame(prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "on-demand feature %s cannot use ", e.Feature)
	for i, k := range slices.Sorted(maps.Keys(e.Request)) {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := json.Marshal(e.Request[k])
		if len(v) > 64 {
			v = append(v[:60:60], "..."...)
		}
		fmt.Fprintf(&b, "%s%s = %s", prefix, k, v)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// blame returns the request-context values to blame for err, an error of
// p, or nil: see OnDemandError.Request. A feature p reads that is null is
// given a value of its type, and p evaluated again.
func (s *Service) blame(p *onDemand, values []Value, request map[string]any, vars *onDemandVars, err error) map[string]any {
	if len(p.named) == 0 || !isTypeError(err) {
		return nil
	}
	var nulls []int
	for _, i := range p.features {
		if values[i].IsNull() {
			if s.placeholders[i].IsNull() {
				return nil // of a type not known
			}
			nulls = append(nulls, i)
		}
	}
	if len(nulls) > 0 {
		for _, i := range nulls {
			vars.f[s.refs[i]] = celValue(s.placeholders[i])
		}
		_, err = p.eval(vars.vars)
		for _, i := range nulls {
			vars.f[s.refs[i]] = celValue(values[i])
		}
		if err == nil {
			return nil
		}
	}
	return p.blame(request, err)
}

// blame returns the request-context values to blame for err, with every
// feature p reads given: see OnDemandError.Request.
func (o *onDemand) blame(request map[string]any, err error) map[string]any {
	if len(o.named) == 0 || !isTypeError(err) {
		return nil
	}
	blamed := make(map[string]any, len(o.named))
	for _, k := range o.named {
		v, ok := request[k]
		if ok && v == nil {
			return nil // a null, as a null feature
		}
		if ok {
			blamed[k] = v
		}
	}
	if len(blamed) == 0 {
		return nil
	}
	return blamed
}

// placeholder is a value of type t, or null if t is not known.
func placeholder(t Type) Value {
	switch t {
	case TypeInt:
		return Int(1)
	case TypeFloat:
		return Float(1.5)
	case TypeString:
		return String("a")
	case TypeBool:
		return Bool(true)
	case TypeTimestamp:
		return Timestamp(0)
	}
	return Null
}

// onDemandVars is what EvalOnDemand hands to CEL: f, the features by
// reference, and request.
type onDemandVars struct {
	f, vars map[string]any
}

func (o *onDemand) eval(vars map[string]any) (Value, error) {
	out, _, err := o.prg.Eval(vars)
	if err != nil {
		return Null, err
	}
	v, err := fromCEL(out)
	if err == nil && v.typ == TypeFloat && (math.IsInf(v.Float(), 0) || math.IsNaN(v.Float())) {
		return Null, fmt.Errorf("result %v is not a finite number", v.Float())
	}
	return v, err
}

// celError turns CEL's issues about expr into one line per problem, without
// its multi-line source excerpts; a problem in an expression of several
// lines is placed by line too.
func celError(iss *cel.Issues, expr string) error {
	var msgs []string
	for _, e := range iss.Errors() {
		at := fmt.Sprintf("column %d", e.Location.Column()+1)
		if strings.Contains(strings.TrimRight(expr, "\n"), "\n") {
			at = fmt.Sprintf("line %d of the expression, column %d", e.Location.Line(), e.Location.Column()+1)
		}
		msgs = append(msgs, fmt.Sprintf("%s (%s)", e.Message, at))
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}
