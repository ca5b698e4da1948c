package serve

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/quiver-ml/quiver/features"
)

// FuzzDecodeRequest: any body is either refused with a 400 or decoded into
// a request whose every column has one string or int per entity, within the
// limit, and whose request context has one value per entity where it is
// per entity. Bodies encoding/json rejects are refused.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1", "u2"]}}`,
		`{"feature_service": "risk", "entities": {"card_id": [1, 2], "merchant_id": ["m", "n"]}, "request_context": {"amount": [1.5, 2], "x": {"y": [true, null]}}}`,
		`{"features": [], "entities": {}}`,
		`{"entities": {"a": [1e3, -0, 9223372036854775807, 9223372036854775808]}}`,
		`[]`, `{"features": "x"}`, `{"entities": {"a": [1], "a": [2]}}`,
	} {
		f.Add([]byte(s))
	}
	var p, q fastjson.Parser
	f.Fuzz(func(t *testing.T, body []byte) {
		if v, err := q.ParseBytes(body); err == nil && json.Valid(body) {
			if n, counted := values(v), jsonValues(body, math.MaxInt); counted < n {
				t.Fatalf("jsonValues counted %d values in %q, which holds %d", counted, body, n)
			}
		}
		req, err := decodeRequest(&p, body, 5, false)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != http.StatusBadRequest || ae.msg == "" {
				t.Fatalf("error %v is not a 400 with a message", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body encoding/json rejects: %q", body)
		}
		if req.rows < 1 || req.rows > 5 || len(req.entities) == 0 {
			t.Fatalf("rows %d, %d columns", req.rows, len(req.entities))
		}
		if (req.service == "") == (req.features == nil) {
			t.Fatalf("service %q and features %q", req.service, req.features)
		}
		names := map[string]bool{}
		for _, c := range req.entities {
			if names[c.name] {
				t.Fatalf("column %s twice", c.name)
			}
			names[c.name] = true
			if len(c.values) != req.rows {
				t.Fatalf("column %s has %d values for %d rows", c.name, len(c.values), req.rows)
			}
			for _, v := range c.values {
				if v.Type() != features.TypeString && v.Type() != features.TypeInt {
					t.Fatalf("column %s holds a %s", c.name, v.Type())
				}
			}
		}
		keys := map[string]bool{}
		for _, c := range req.context {
			if keys[c.name] {
				t.Fatalf("context %s twice", c.name)
			}
			keys[c.name] = true
			if c.perRow != nil && len(c.perRow) != req.rows {
				t.Fatalf("context %s has %d values for %d rows", c.name, len(c.perRow), req.rows)
			}
		}
		m, setRow := req.rowContext()
		for i := range req.rows {
			setRow(i)
			if len(m) != len(req.context) {
				t.Fatalf("row %d's context has %d keys, the request %d", i, len(m), len(req.context))
			}
		}
	})
}

// values counts the JSON values of v, v included.
func values(v *fastjson.Value) int {
	n := 1
	switch v.Type() {
	case fastjson.TypeArray:
		for _, x := range v.GetArray() {
			n += values(x)
		}
	case fastjson.TypeObject:
		v.GetObject().Visit(func(_ []byte, x *fastjson.Value) { n += values(x) })
	}
	return n
}

// TestJSONValues: jsonValues counts at least the values of a body, none in
// a string, and stops past its limit.
func TestJSONValues(t *testing.T) {
	for body, want := range map[string]int{
		`0`:  1,
		`[]`: 2, // counted at most once per bracket
		`{"a": "x,\\\":[", "b": [1, 2, {"c": 3}]}`: 8, // 7 values, 8 counted
		`"` + strings.Repeat(",", 1000) + `"`:      1,
	} {
		if got := jsonValues([]byte(body), math.MaxInt); got != want {
			t.Errorf("jsonValues(%s) = %d, want %d", body, got, want)
		}
	}
	if got := jsonValues([]byte(`[`+strings.Repeat("0,", 1000)+`0]`), 10); got != 11 {
		t.Errorf("jsonValues with limit 10 went on to %d, want 11", got)
	}
}
