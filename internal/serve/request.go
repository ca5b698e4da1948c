package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/quiver-ml/quiver/features"
)

// request is a decoded POST /get-online-features body. It is checked for
// shape here, and against the definitions by plan.
type request struct {
	features []string // the requested references; nil when service is set
	service  string
	// fullNames names the features <view>__<feature> in the response, as
	// Feast's full_feature_names does and training sets name their columns.
	fullNames bool
	entities  []column // in the body's order
	context   []contextValue
	rows      int // entities per column
}

// column is one join key's values, one per entity. Values are strings or
// ints.
type column struct {
	name   string
	values []features.Value
}

// contextValue is one request_context key: a value for every entity, or an
// array with one per entity.
type contextValue struct {
	name   string
	all    any   // when perRow is nil
	perRow []any // one per entity
}

// apiError is an error the client gets as {"error": msg, "code": code}.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{code: http.StatusBadRequest, msg: clip(fmt.Sprintf(format, args...), maxErrorBytes)}
}

// maxErrorBytes bounds an error's text, and maxProblemBytes each problem's,
// however long the names a request gives: an error echoes what it refuses.
const (
	maxErrorBytes   = 4096
	maxProblemBytes = 1000
)

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// decodeRequest decodes and checks the shape of a request body; maxEntities
// bounds the number of entities. A lookup names its features; a prediction
// (predict) does not: its model does.
// optional are the fields a null stands for the absence of.
var optional = map[string]bool{"features": true, "feature_service": true, "full_feature_names": true, "request_context": true}

func decodeRequest(p *fastjson.Parser, body []byte, maxEntities int, predict bool) (*request, error) {
	// fastjson is lenient (raw control characters in strings, say):
	// encoding/json decides what is JSON.
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, badRequest("request body is not valid JSON: %v", err)
	}
	root, err := p.ParseBytes(features.ReplaceLoneSurrogates(body))
	if err != nil {
		// Valid JSON that fastjson refuses is nested too deep; its error
		// repeats every level.
		return nil, badRequest("request body nests JSON deeper than %d levels", fastjson.MaxDepth)
	}
	obj, err := root.Object()
	if err != nil {
		return nil, badRequest("request body must be a JSON object, not %s", root.Type())
	}
	req := &request{rows: -1}
	var problems []string
	var entities, context *fastjson.Value
	hasFeatures := false
	given := map[string]bool{}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		if given[string(key)] {
			problems = append(problems, fmt.Sprintf("field %q is given twice", key))
			return
		}
		given[string(key)] = true
		if v.Type() == fastjson.TypeNull && optional[string(key)] {
			return // as Feast's clients send an unset field
		}
		switch string(key) {
		case "features":
			if predict {
				problems = append(problems, `unknown field "features": a prediction's features are its model's`)
				return
			}
			hasFeatures = true
			arr, err := v.Array()
			if err != nil {
				problems = append(problems, "features must be an array of feature references")
				return
			}
			req.features = make([]string, 0, len(arr))
			for i, f := range arr {
				s, err := f.StringBytes()
				if err != nil {
					problems = append(problems, fmt.Sprintf("features[%d] must be a string like \"view@1:feature\"", i))
					return
				}
				req.features = append(req.features, string(s))
			}
		case "feature_service":
			if predict {
				problems = append(problems, `unknown field "feature_service": a prediction's features are its model's`)
				return
			}
			s, err := v.StringBytes()
			if err != nil || len(s) == 0 {
				problems = append(problems, "feature_service must be a non-empty string")
				return
			}
			req.service = string(s)
		case "full_feature_names":
			if predict {
				problems = append(problems, `unknown field "full_feature_names": a prediction names no features`)
				return
			}
			b, err := v.Bool()
			if err != nil {
				problems = append(problems, "full_feature_names must be true or false")
				return
			}
			req.fullNames = b
		case "entities":
			entities = v
		case "request_context":
			context = v
		default:
			want := "features or feature_service, entities, request_context, full_feature_names"
			if predict {
				want = "entities, request_context"
			}
			problems = append(problems, fmt.Sprintf("unknown field %q (want %s)", key, want))
		}
	})
	switch {
	case predict:
	case hasFeatures && req.service != "":
		problems = append(problems, "give features or feature_service, not both")
	case !hasFeatures && req.service == "":
		problems = append(problems, "give features (a list of feature references) or feature_service")
	case hasFeatures && len(req.features) == 0 && len(problems) == 0:
		problems = append(problems, "features is empty")
	}
	if entities == nil {
		problems = append(problems, "entities is missing: give each join key's values, like {\"user_id\": [\"u1\"]}")
	} else {
		problems = append(problems, req.decodeEntities(entities, maxEntities)...)
	}
	if context != nil && req.rows > 0 {
		problems = append(problems, req.decodeContext(context)...)
	}
	if len(problems) > 0 {
		return nil, badRequest("%s", joinProblems(problems))
	}
	return req, nil
}

func (req *request) decodeEntities(v *fastjson.Value, maxEntities int) []string {
	obj, err := v.Object()
	if err != nil {
		return []string{"entities must be an object of join key → array of values"}
	}
	if obj.Len() == 0 {
		return []string{"entities is empty: give each join key's values, like {\"user_id\": [\"u1\"]}"}
	}
	var problems []string
	given := map[string]bool{}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		name := string(key)
		if given[name] {
			problems = append(problems, fmt.Sprintf("entities.%s is given twice", name))
			return
		}
		given[name] = true
		arr, err := v.Array()
		if err != nil {
			problems = append(problems, fmt.Sprintf("entities.%s must be an array of values, one per entity", name))
			return
		}
		if len(arr) > maxEntities {
			problems = append(problems, fmt.Sprintf("too many entities: %d in entities.%s, at most %d per request", len(arr), name, maxEntities))
			return
		}
		if req.rows >= 0 && len(arr) != req.rows {
			problems = append(problems, fmt.Sprintf("entities.%s has %d values, entities.%s %d: every join key needs one value per entity", name, len(arr), req.entities[0].name, req.rows))
			return
		}
		col := column{name: name, values: make([]features.Value, len(arr))}
		for i, x := range arr {
			val, ok := entityValue(x)
			if !ok {
				problems = append(problems, fmt.Sprintf("entities.%s[%d] must be a string or an integer, not %s", name, i, describe(x)))
				return
			}
			col.values[i] = val
		}
		if req.rows < 0 {
			req.rows = len(arr)
		}
		req.entities = append(req.entities, col)
	})
	if len(problems) == 0 && req.rows == 0 {
		problems = append(problems, "entities has no values")
	}
	return problems
}

// entityValue converts a join-key value: a string, or an integral number.
func entityValue(v *fastjson.Value) (features.Value, bool) {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return features.String(features.ValidUTF8(s)), true // as ingest decodes the event's key
	case fastjson.TypeNumber:
		if i, err := v.Int64(); err == nil {
			return features.Int(i), true
		}
	}
	return features.Null, false
}

func (req *request) decodeContext(v *fastjson.Value) []string {
	obj, err := v.Object()
	if err != nil {
		return []string{"request_context must be an object"}
	}
	var problems []string
	given := map[string]bool{}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		if given[string(key)] {
			problems = append(problems, fmt.Sprintf("request_context.%s is given twice", key))
			return
		}
		given[string(key)] = true
		if n := hugeNumber(v); n != "" {
			problems = append(problems, fmt.Sprintf("request_context.%s holds the number %s, out of the float64 range", key, n))
			return
		}
		cv := contextValue{name: string(key)}
		if arr, err := v.Array(); err == nil {
			if len(arr) != req.rows {
				problems = append(problems, fmt.Sprintf("request_context.%s has %d values for %d entities: give one value, or an array with one per entity", key, len(arr), req.rows))
				return
			}
			cv.perRow = make([]any, len(arr))
			for i, x := range arr {
				cv.perRow[i] = toAny(x)
			}
		} else {
			cv.all = toAny(v)
		}
		req.context = append(req.context, cv)
	})
	return problems
}

// contextError is the 400 of an on-demand feature that cannot use the
// request context of the i-th of n entities.
func contextError(oe *features.OnDemandError, i, n int) *apiError {
	if n == 1 {
		return badRequest("%s", oe.Blame("request_context."))
	}
	return badRequest("entity at index %d: %s", i, oe.Blame("request_context."))
}

// rowContext returns the request context as CEL reads it, and a function
// that sets it to the i-th entity's. The map is built once and each call
// sets only the keys with a value per entity, so that a lookup's cost grows
// with its body, not with its context keys times its entities.
func (req *request) rowContext() (m map[string]any, setRow func(i int)) {
	m = make(map[string]any, len(req.context))
	var perRow []contextValue
	for _, c := range req.context {
		if c.perRow != nil {
			perRow = append(perRow, c)
		} else {
			m[c.name] = c.all
		}
	}
	return m, func(i int) {
		for _, c := range perRow {
			m[c.name] = c.perRow[i]
		}
	}
}

func (req *request) hasContext(name string) bool {
	for _, c := range req.context {
		if c.name == name {
			return true
		}
	}
	return false
}

// hugeNumber returns the first number in v out of the float64 range, or "".
func hugeNumber(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNumber:
		if f, err := v.Float64(); err != nil || math.IsInf(f, 0) {
			return v.String()
		}
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, x := range arr {
			if n := hugeNumber(x); n != "" {
				return n
			}
		}
	case fastjson.TypeObject:
		var n string
		obj, _ := v.Object()
		obj.Visit(func(_ []byte, x *fastjson.Value) {
			if n == "" {
				n = hugeNumber(x)
			}
		})
		return n
	}
	return ""
}

// toAny converts JSON to the values CEL reads: numbers are doubles, as in
// JSON.
func toAny(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return string(s)
	case fastjson.TypeNumber:
		f, _ := v.Float64()
		return f
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeArray:
		arr, _ := v.Array()
		out := make([]any, len(arr))
		for i, x := range arr {
			out[i] = toAny(x)
		}
		return out
	case fastjson.TypeObject:
		obj, _ := v.Object()
		out := make(map[string]any, obj.Len())
		obj.Visit(func(k []byte, x *fastjson.Value) { out[string(k)] = toAny(x) })
		return out
	}
	return nil
}

func describe(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNumber:
		text := string(v.MarshalTo(nil))
		if _, err := strconv.ParseInt(text, 10, 64); errors.Is(err, strconv.ErrRange) {
			return "the number " + text + " (out of the int64 range)"
		}
		return "the number " + text
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeObject:
		return "an object"
	}
	return v.Type().String()
}

func joinProblems(ps []string) string {
	if len(ps) == 1 {
		return ps[0]
	}
	return strconv.Itoa(len(ps)) + " problems: " + listSome(ps, maxProblemBytes, maxErrorBytes-100)
}

// listSome joins ps, each clipped to each bytes, as many as fit in total
// bytes (one at least), and says how many more there are: every one of a
// few short problems is named, and a body of many bad fields gets a
// readable error that costs little to build.
func listSome(ps []string, each, total int) string {
	var b strings.Builder
	for i, p := range ps {
		p = clip(p, each)
		if i > 0 && b.Len()+len(p) > total {
			fmt.Fprintf(&b, "; and %d more", len(ps)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}
