package features_test

import (
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

const fpBase = `project: fp
entities:
  - name: user
    join_keys: [user_id]
sources:
  - name: txns
    topic: transactions
    event_time: ts
    schema: {user_id: string, amount: float, qty: int, country: string, ts: timestamp}
feature_views:
  - name: v
    version: 1
    entity: user
    source: txns
    filter: "e.amount > 0.0"
    ttl: 24h
    features:
      - {name: n_1h, agg: count, window: 1h}
      - {name: sum_1h, agg: sum, field: amount, window: 1h}
      - {name: last_country, agg: last, field: country}
`

func viewFingerprint(t *testing.T, src string) string {
	t.Helper()
	defs, err := features.Parse("fp.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", src, err)
	}
	return defs.View("v", 1).Fingerprint(defs)
}

// TestFingerprintIgnoresFormatting rewrites the base definition in ways that
// do not change what the view computes.
func TestFingerprintIgnoresFormatting(t *testing.T) {
	base := viewFingerprint(t, fpBase)
	for name, src := range map[string]string{
		"block style and key order": `project: fp
sources:
  - schema:
      ts: timestamp
      country: string
      qty: int
      amount: float
      user_id: string
    event_time: ts
    topic: transactions
    name: txns
entities:
  - join_keys:
      - user_id
    name: user
feature_views:
  - features:
      - window: 1h
        agg: count
        name: n_1h
      - field: amount
        name: sum_1h
        window: 1h
        agg: sum
      - field: country
        agg: last
        name: last_country
    ttl: 24h
    source: txns
    entity: user
    filter: "e.amount > 0.0"
    version: 1
    name: v
`,
		"comments and blank lines":     strings.ReplaceAll(fpBase, "\n  - name: v\n", "\n\n  # the view\n  - name: v # named v\n"),
		"feature order":                strings.Replace(strings.Replace(fpBase, "      - {name: n_1h, agg: count, window: 1h}\n", "", 1), "      - {name: last_country", "      - {name: n_1h, agg: count, window: 1h}\n      - {name: last_country", 1),
		"filter spacing":               strings.Replace(fpBase, `"e.amount > 0.0"`, `"e.amount   >0.0  "`, 1),
		"equal window spelling":        strings.Replace(fpBase, "{name: n_1h, agg: count, window: 1h}", "{name: n_1h, agg: count, window: 60m}", 1),
		"explicit default granularity": strings.Replace(fpBase, "{name: n_1h, agg: count, window: 1h}", "{name: n_1h, agg: count, window: 1h, granularity: 1m}", 1),
		"default format and lateness":  strings.Replace(fpBase, "    event_time: ts\n", "    event_time: ts\n    format: json\n    allowed_lateness: 1h\n", 1),
		"ttl":                          strings.Replace(fpBase, "ttl: 24h", "ttl: 48h", 1),
		"unused schema field added":    strings.Replace(fpBase, "country: string,", "country: string, device: string,", 1),
		"type of an unused field":      strings.Replace(fpBase, "qty: int", "qty: float", 1),
		"another view beside it":       fpBase + "  - {name: w, version: 1, entity: user, source: txns, features: [{name: c, agg: count}]}\n",
	} {
		if got := viewFingerprint(t, src); got != base {
			t.Errorf("%s: fingerprint changed: %s != %s", name, got, base)
		}
	}
}

// TestFingerprintSeesEverySemanticField changes each semantic field in turn.
func TestFingerprintSeesEverySemanticField(t *testing.T) {
	base := viewFingerprint(t, fpBase)
	seen := map[string]string{}
	for name, edit := range map[string][2]string{
		"entity join keys":     {"join_keys: [user_id]", "join_keys: [user_id, country]"},
		"source topic":         {"topic: transactions", "topic: payments"},
		"event time field":     {"event_time: ts", "event_time: qty"},
		"allowed lateness":     {"    event_time: ts\n", "    event_time: ts\n    allowed_lateness: 2h\n"},
		"type of a used field": {"country: string", "country: int"},
		"filter":               {`"e.amount > 0.0"`, `"e.amount > 1.0"`},
		"no filter":            {"    filter: \"e.amount > 0.0\"\n", ""},
		"aggregation":          {"{name: sum_1h, agg: sum,", "{name: sum_1h, agg: avg,"},
		"field":                {"agg: sum, field: amount", "agg: sum, field: qty"},
		"window":               {"{name: n_1h, agg: count, window: 1h}", "{name: n_1h, agg: count, window: 2h}"},
		"granularity":          {"{name: n_1h, agg: count, window: 1h}", "{name: n_1h, agg: count, window: 1h, granularity: 5m}"},
		"lifetime":             {"{name: n_1h, agg: count, window: 1h}", "{name: n_1h, agg: count}"},
		"feature name":         {"{name: n_1h,", "{name: count_1h,"},
		"feature removed":      {"      - {name: n_1h, agg: count, window: 1h}\n", ""},
		"feature added":        {"      - {name: last_country", "      - {name: max_1h, agg: max, field: amount, window: 1h}\n      - {name: last_country"},
	} {
		src := strings.Replace(fpBase, edit[0], edit[1], 1)
		if src == fpBase {
			t.Fatalf("%s: edit %q did not apply", name, edit[0])
		}
		got := viewFingerprint(t, src)
		if got == base {
			t.Errorf("%s: fingerprint unchanged", name)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s give the same fingerprint", name, other)
		}
		seen[got] = name
	}
}
