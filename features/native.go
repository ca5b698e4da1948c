package features

import (
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// native is a filter compiled to Go. The filters views mostly have
// (comparisons of a field with a constant of the field's type or null,
// joined by !, && and ||) cost CEL's interpreter a frame, an activation and
// a boxed value per event, and a filter runs for every event of its view.
// A native filter returns its result and true, or false where CEL decides:
// where the expression fails (a null field in an ordering, say), CEL
// evaluates it again and reports its own error. Its test compares it with
// CEL on random expressions and events.
type native func(ev *Event) (result, known bool)

// compileNative compiles a checked filter expression, or returns nil if it
// is not of that form. index maps e.<field> to its schema index.
func compileNative(a *ast.AST, src *Source, index map[string]int) native {
	var compile func(e ast.Expr) native
	// field returns the schema index of a field reference, or -1.
	field := func(e ast.Expr) int {
		ref, ok := a.ReferenceMap()[e.ID()]
		if !ok || ref.Value != nil {
			return -1
		}
		if i, ok := index[ref.Name]; ok {
			return i
		}
		return -1
	}
	compile = func(e ast.Expr) native {
		if f := field(e); f >= 0 {
			if src.Schema[f].Type != TypeBool {
				return nil
			}
			return func(ev *Event) (bool, bool) {
				v := ev.Fields[f]
				return v.num != 0, v.typ == TypeBool
			}
		}
		if e.Kind() == ast.LiteralKind {
			b, ok := e.AsLiteral().(types.Bool)
			if !ok {
				return nil
			}
			return func(*Event) (bool, bool) { return bool(b), true }
		}
		if e.Kind() != ast.CallKind || e.AsCall().IsMemberFunction() {
			return nil
		}
		call := e.AsCall()
		args := call.Args()
		switch op := call.FunctionName(); op {
		case operators.LogicalNot:
			x := compile(args[0])
			if x == nil {
				return nil
			}
			return func(ev *Event) (bool, bool) {
				r, ok := x(ev)
				return !r, ok
			}
		case operators.LogicalAnd, operators.LogicalOr:
			if len(args) != 2 {
				return nil
			}
			x, y := compile(args[0]), compile(args[1])
			if x == nil || y == nil {
				return nil
			}
			// CEL's && and || are commutative: a false (for ||, a true)
			// operand decides, even when the other fails.
			decides := op == operators.LogicalOr
			return func(ev *Event) (bool, bool) {
				r, rok := x(ev)
				if rok && r == decides {
					return decides, true
				}
				s, sok := y(ev)
				if sok && s == decides {
					return decides, true
				}
				return !decides, rok && sok
			}
		case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
			if len(args) != 2 {
				return nil
			}
			if f := field(args[1]); f >= 0 && args[0].Kind() == ast.LiteralKind {
				return compare(src.Schema[f].Type, f, mirror(op), args[0].AsLiteral())
			}
			if f := field(args[0]); f >= 0 && args[1].Kind() == ast.LiteralKind {
				return compare(src.Schema[f].Type, f, op, args[1].AsLiteral())
			}
		}
		return nil
	}
	return compile(a.Expr())
}

// mirror returns the operator that gives the same result with its operands
// swapped.
func mirror(op string) string {
	switch op {
	case operators.Less:
		return operators.Greater
	case operators.LessEquals:
		return operators.GreaterEquals
	case operators.Greater:
		return operators.Less
	case operators.GreaterEquals:
		return operators.LessEquals
	}
	return op
}

// compare compiles `field op constant` for a field of type typ, if the
// constant has that type, is an int a float field is ordered against, or
// is null in an equality. A value of another type (null) is not equal to
// the constant and cannot be ordered, as in CEL; NaN compares as in Go.
func compare(typ Type, f int, op string, c any) native {
	switch k := c.(type) {
	case types.Double:
		if typ == TypeFloat {
			return ordered(typ, f, op, float64(k), Value.Float)
		}
	case types.Int:
		if typ == TypeInt {
			return ordered(typ, f, op, int64(k), Value.Int)
		}
		// A float field ordered against an int (e.amount > 0): as a float,
		// where the int is one exactly.
		if typ == TypeFloat && k >= -1<<53 && k <= 1<<53 {
			return ordered(typ, f, op, float64(k), Value.Float)
		}
	case types.String:
		if typ == TypeString {
			return ordered(typ, f, op, string(k), Value.Str)
		}
	case types.Bool:
		if typ == TypeBool && (op == operators.Equals || op == operators.NotEquals) {
			return ordered(typ, f, op, b2i(bool(k)), Value.Int)
		}
	case types.Null: // has(e.x) is e.x != null
		if op == operators.Equals || op == operators.NotEquals {
			ne := op == operators.NotEquals
			return func(ev *Event) (bool, bool) { return ev.Fields[f].IsNull() != ne, true }
		}
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ordered compiles `field op k` for a field of type typ, read by get.
func ordered[T int64 | float64 | string](typ Type, f int, op string, k T, get func(Value) T) native {
	var cmp func(x T) bool
	switch op {
	case operators.Equals, operators.NotEquals:
		ne := op == operators.NotEquals
		return func(ev *Event) (bool, bool) {
			v := ev.Fields[f]
			return (v.typ == typ && get(v) == k) != ne, true
		}
	case operators.Less:
		cmp = func(x T) bool { return x < k }
	case operators.LessEquals:
		cmp = func(x T) bool { return x <= k }
	case operators.Greater:
		cmp = func(x T) bool { return x > k }
	case operators.GreaterEquals:
		cmp = func(x T) bool { return x >= k }
	default:
		return nil
	}
	return func(ev *Event) (bool, bool) {
		v := ev.Fields[f]
		if v.typ != typ {
			return false, false
		}
		return cmp(get(v)), true
	}
}
