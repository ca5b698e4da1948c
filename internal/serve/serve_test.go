package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
)

// now is the serve clock in these tests.
var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type payment struct {
	user     string
	card     int64
	merchant string
	amount   float64
	country  string
	at       time.Time
}

// payments: u1 is active (with a refund v2 filters out), u2's card at m2 was
// last seen two hours ago (outside pair_txn's 1h TTL), u|3 has a key that
// needs escaping, and u4 has an event later than now.
var payments = []payment{
	{"u1", 11, "m1", 10, "DE", now.Add(-30 * time.Minute)},
	{"u1", 11, "m1", 30, "FR", now.Add(-10 * time.Minute)},
	{"u1", 11, "m2", -5, "US", now.Add(-5 * time.Minute)},
	{"u1", 12, "m1", 2.5, "DE", now.Add(-2 * time.Hour)},
	{"u2", 21, "m2", 7, "US", now.Add(-2 * time.Hour)},
	{`u|3\`, 31, "m|3", 1, "FR", now.Add(-time.Minute)},
	{"u4", 41, "m4", 4, "DE", now.Add(3 * time.Second)},
}

// fixture is a server over a real Redis holding the states ingest would
// write for payments, and the engines to compute what it should answer.
type fixture struct {
	defs    *features.Definitions
	engines map[string]*features.Engine // by view ref
	states  map[string]map[string]*features.State
	srv     *serve.Server
	redis   *goredis.Client
	redisd  *ingesttest.RedisServer // the server f.redis reads
	reg     *prometheus.Registry    // the server's metrics
	clock   time.Time               // the server's; now unless a test moves it
	logs    logBuffer               // the server's log
}

// logBuffer is a log that a test reads while the server writes it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newFixture(t testing.TB, tokens ...string) *fixture {
	t.Helper()
	defs, err := features.Load("testdata/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{defs: defs, engines: map[string]*features.Engine{}, states: map[string]map[string]*features.State{}, clock: now}
	src := defs.Source("payments")
	redisd := ingesttest.StartRedisServer(t)
	client := goredis.NewClient(&goredis.Options{Addr: redisd.Addr})
	for _, v := range defs.Views {
		eng, err := features.NewEngine(defs, v)
		if err != nil {
			t.Fatal(err)
		}
		f.engines[v.Ref()] = eng
		f.states[v.Ref()] = map[string]*features.State{}
		for i, p := range payments {
			ev := &features.Event{Time: p.at.UnixMilli(), Offset: int64(i), Fields: make([]features.Value, len(src.Schema))}
			for j, fld := range src.Schema {
				ev.Fields[j] = map[string]features.Value{
					"user_id": features.String(p.user), "card_id": features.Int(p.card), "merchant_id": features.String(p.merchant),
					"amount": features.Float(p.amount), "country": features.String(p.country), "ts": features.Timestamp(p.at.UnixMilli()),
				}[fld.Name]
			}
			var keys []features.Value
			for _, k := range defs.Entity(v.Entity).JoinKeys {
				keys = append(keys, ev.Fields[src.Field(k)])
			}
			key, _ := online.AppendEntityKey(nil, keys...)
			st := f.states[v.Ref()][string(key)]
			if st == nil {
				st = eng.NewState()
				f.states[v.Ref()][string(key)] = st
			}
			if _, err := eng.Apply(st, ev); err != nil {
				t.Fatal(err)
			}
		}
		for key, st := range f.states[v.Ref()] {
			rec := online.EncodeState(eng, st, map[int32]int64{0: 99})
			if err := client.Set(context.Background(), online.RedisKey("quiver", online.TableOf(v), key), rec, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var tables []online.Table
	for _, v := range defs.Views {
		tables = append(tables, online.TableOf(v))
	}
	ingesttest.MarkSeeded(t, client, "quiver", tables...)
	f.redis, f.redisd, f.reg = client, redisd, prometheus.NewRegistry()
	f.srv, err = serve.New(serve.Config{Definitions: defs, Store: redis.New(client, "quiver", tables), AuthTokens: tokens, Registerer: f.reg,
		Now: func() time.Time { return f.clock }, Logger: slog.New(slog.NewTextHandler(&f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return f
}

// value is what the engine says a feature of an entity is at t.
func (f *fixture) value(t *testing.T, view, feature, key string, at int64) any {
	eng := f.engines[view]
	st := f.states[view][key]
	if st == nil {
		t.Fatalf("no state for %s %s", view, key)
	}
	out := make([]features.Value, len(eng.View().Features))
	if err := eng.Evaluate(st, at, out); err != nil {
		t.Fatal(err)
	}
	for i, ft := range eng.View().Features {
		if ft.Name == feature {
			return jsonValue(out[i])
		}
	}
	t.Fatalf("no feature %s in %s", feature, view)
	return nil
}

// jsonValue is a value as encoding/json decodes serve's JSON.
func jsonValue(v features.Value) any {
	switch v.Type() {
	case features.TypeNull:
		return nil
	case features.TypeString:
		return v.Str()
	case features.TypeInt:
		return float64(v.Int())
	case features.TypeFloat:
		return v.Float()
	case features.TypeTimestamp:
		return time.UnixMilli(v.Int()).UTC().Format(time.RFC3339Nano)
	}
	panic(v.Type())
}

type response struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
		AsOf         string   `json:"as_of"`
	} `json:"metadata"`
	Results []struct {
		Values          []any    `json:"values"`
		Statuses        []string `json:"statuses"`
		EventTimestamps []string `json:"event_timestamps"`
	} `json:"results"`
	Error string `json:"error"`
	Code  int    `json:"code"`
}

func (f *fixture) do(t *testing.T, method, path, body string, header ...string) (int, response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, req)
	raw, _ := io.ReadAll(w.Result().Body)
	var r response
	if !json.Valid(raw) {
		t.Fatalf("%s %s: invalid JSON response: %s", method, path, raw)
	}
	if err := json.Unmarshal(raw, &r); err != nil && w.Code == http.StatusOK && strings.HasPrefix(path, "/get") {
		t.Fatalf("decode response: %v\n%s", err, raw)
	}
	return w.Code, r, string(raw)
}

func TestLookup(t *testing.T) {
	f := newFixture(t)
	body := `{"features": ["user_txn:txn_count_1h", "user_txn@1:amount_avg_24h", "user_txn:last_country", "user_txn@2:last_seen", "user_txn@1:txn_count_1h"],
		"entities": {"user_id": ["u1", "nobody", "u|3\\"]}}`
	code, r, raw := f.do(t, "POST", "/get-online-features", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	wantNames := []string{"user_id", "user_txn@2:txn_count_1h", "user_txn@1:amount_avg_24h", "user_txn@2:last_country", "user_txn@2:last_seen", "user_txn@1:txn_count_1h"}
	if fmt.Sprint(r.Metadata.FeatureNames) != fmt.Sprint(wantNames) {
		t.Errorf("feature_names = %q, want %q (view:feature resolves to the highest version)", r.Metadata.FeatureNames, wantNames)
	}
	if r.Metadata.AsOf != now.Format(time.RFC3339Nano) {
		t.Errorf("as_of = %s, want the request time %s", r.Metadata.AsOf, now.Format(time.RFC3339Nano))
	}
	if fmt.Sprint(r.Results[0].Values) != `[u1 nobody u|3\]` || fmt.Sprint(r.Results[0].Statuses) != "[PRESENT PRESENT PRESENT]" {
		t.Errorf("entity column = %v %v", r.Results[0].Values, r.Results[0].Statuses)
	}
	at := now.UnixMilli()
	for i, name := range wantNames[1:] {
		res := r.Results[i+1]
		view, feature, _ := strings.Cut(name, ":")
		for row, key := range []string{"u1", "nobody", `u\|3\\`} {
			if key == "nobody" {
				if res.Values[row] != nil || res.Statuses[row] != "NOT_FOUND" || res.EventTimestamps[row] != "1970-01-01T00:00:00Z" {
					t.Errorf("%s of an unknown entity: %v %s %s", name, res.Values[row], res.Statuses[row], res.EventTimestamps[row])
				}
				continue
			}
			if want := f.value(t, view, feature, key, at); res.Values[row] != want || res.Statuses[row] != "PRESENT" {
				t.Errorf("%s of %s = %v (%s), want %v PRESENT", name, key, res.Values[row], res.Statuses[row], want)
			}
			last, _ := f.states[view][key].LastEventTime()
			if want := time.UnixMilli(last).UTC().Format(time.RFC3339Nano); res.EventTimestamps[row] != want {
				t.Errorf("%s of %s: event timestamp %s, want %s", name, key, res.EventTimestamps[row], want)
			}
		}
	}
	// v2 filters the refund out: u1's latest v2 event is the FR one.
	if got := r.Results[3].Values[0]; got != "FR" {
		t.Errorf("user_txn@2:last_country of u1 = %v, want FR", got)
	}
	// Each view version's lookups count from 0, read or not: rate()
	// sees a view's first lookups.
	lookups := `
# HELP quiver_serve_entity_lookups_total Entities looked up, by view version.
# TYPE quiver_serve_entity_lookups_total counter
`
	for _, v := range f.defs.Views {
		n := map[string]int{"user_txn@1": 3, "user_txn@2": 3}[v.Ref()]
		lookups += fmt.Sprintf("quiver_serve_entity_lookups_total{view=%q} %d\n", v.Ref(), n)
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(lookups), "quiver_serve_entity_lookups_total"); err != nil {
		t.Error(err)
	}
}

// TestFullFeatureNames: with Feast's full_feature_names, features are named
// as training sets name their columns.
func TestFullFeatureNames(t *testing.T) {
	f := newFixture(t)
	body := `{"features": ["user_txn:txn_count_1h", "user_txn@1:amount_avg_24h"], "entities": {"user_id": ["u1"]}, "full_feature_names": true}`
	code, r, raw := f.do(t, "POST", "/get-online-features", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	if want := "[user_id user_txn__txn_count_1h user_txn__amount_avg_24h]"; fmt.Sprint(r.Metadata.FeatureNames) != want {
		t.Errorf("feature_names = %q, want %s", r.Metadata.FeatureNames, want)
	}
	if want := f.value(t, "user_txn@2", "txn_count_1h", "u1", now.UnixMilli()); r.Results[1].Values[0] != want {
		t.Errorf("txn_count_1h of u1 = %v, want %v", r.Results[1].Values[0], want)
	}
	for _, c := range []struct{ body, want string }{
		{`{"features": ["user_txn@1:txn_count_1h", "user_txn@2:txn_count_1h"], "entities": {"user_id": ["u1"]}, "full_feature_names": true}`,
			"full_feature_names: user_txn@1:txn_count_1h and user_txn@2:txn_count_1h would both be user_txn__txn_count_1h"},
		{`{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}, "full_feature_names": 1}`, "full_feature_names must be true or false"},
	} {
		if code, r, raw := f.do(t, "POST", "/get-online-features", c.body); code != 400 || !strings.Contains(r.Error, c.want) {
			t.Errorf("got %d %s\nwant 400 with an error containing %q", code, raw, c.want)
		}
	}
}

// An on-demand feature that fails on the data, not on the request's types,
// is null: a null request value, as a null feature. (A request value of a
// type the expression cannot use is a 400 whatever the features hold:
// TestBadInput.)
func TestOnDemandNull(t *testing.T) {
	f := newFixture(t)
	body := `{"feature_service": "risk", "entities": {"user_id": ["u1", "nobody"], "card_id": [11, 11], "merchant_id": ["m1", "m1"]}, "request_context": {"amount": [null, 5]}}`
	code, r, raw := f.do(t, "POST", "/get-online-features", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	if got := r.Results[5]; got.Values[0] != nil || got.Values[1] != nil || got.Statuses[0] != "NOT_FOUND" || got.Statuses[1] != "NOT_FOUND" {
		t.Errorf("amount_vs_avg = %v %v, want nulls, NOT_FOUND", got.Values, got.Statuses)
	}
}

func TestLookupServiceCompositeKeysAndTTL(t *testing.T) {
	f := newFixture(t)
	body := `{"feature_service": "risk",
		"entities": {"merchant_id": ["m1", "m2", "m|3", "m1"], "card_id": [11, 21, 31, 12], "user_id": ["u1", "u2", "u|3\\", "u1"]},
		"request_context": {"amount": [100, 8, 2, 0]}}`
	code, r, raw := f.do(t, "POST", "/get-online-features", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	want := "[merchant_id card_id user_id user_txn@1:amount_avg_24h pair_txn@1:amount_sum_24h amount_vs_avg]"
	if fmt.Sprint(r.Metadata.FeatureNames) != want {
		t.Fatalf("feature_names = %v, want %s (entity columns in request order first)", r.Metadata.FeatureNames, want)
	}
	at := now.UnixMilli()
	users := []string{"u1", "u2", `u\|3\\`, "u1"}
	pairs := []string{"11|m1", "21|m2", `31|m\|3`, "12|m1"}
	for row := range 4 {
		avg := f.value(t, "user_txn@1", "amount_avg_24h", users[row], at)
		if got := r.Results[3].Values[row]; got != avg {
			t.Errorf("row %d: amount_avg_24h = %v, want %v", row, got, avg)
		}
		sum, stat := f.value(t, "pair_txn@1", "amount_sum_24h", pairs[row], at), "PRESENT"
		if row == 1 || row == 3 { // last seen 2h ago, TTL 1h
			sum, stat = nil, "OUTSIDE_MAX_AGE"
		}
		if got := r.Results[4]; got.Values[row] != sum || got.Statuses[row] != stat {
			t.Errorf("row %d: pair amount_sum_24h = %v %s, want %v %s", row, got.Values[row], got.Statuses[row], sum, stat)
		}
		amount := []float64{100, 8, 2, 0}[row]
		if got, want := r.Results[5].Values[row], amount/(avg.(float64)+1); got != want {
			t.Errorf("row %d: amount_vs_avg = %v, want %v", row, got, want)
		}
	}
}

// An entity whose latest event is later than the request time is evaluated
// at that event; the others, and as_of, stay at the request time.
func TestFutureEvent(t *testing.T) {
	f := newFixture(t)
	code, r, raw := f.do(t, "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h", "user_txn@1:amount_avg_24h"], "entities": {"user_id": ["u1", "u4"]}}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	if r.Metadata.AsOf != now.Format(time.RFC3339Nano) {
		t.Errorf("as_of = %s, want the request time %s", r.Metadata.AsOf, now.Format(time.RFC3339Nano))
	}
	later := now.Add(3 * time.Second).UnixMilli()
	for i, c := range []struct {
		user string
		at   int64
	}{{"u1", now.UnixMilli()}, {"u4", later}} {
		for j, feature := range []string{"txn_count_1h", "amount_avg_24h"} {
			if got, want := r.Results[1+j].Values[i], f.value(t, "user_txn@1", feature, c.user, c.at); got != want {
				t.Errorf("%s %s = %v, want %v", c.user, feature, got, want)
			}
		}
	}
}

// TestCacheFollowsTime moves the clock while the states stay: the served
// values follow the windows, though the evaluations are cached.
func TestCacheFollowsTime(t *testing.T) {
	f := newFixture(t)
	body := `{"features": ["user_txn@1:txn_count_1h", "user_txn@1:amount_avg_24h"], "entities": {"user_id": ["u1"]}}`
	for _, d := range []time.Duration{0, 0, time.Second, 20 * time.Minute, 20*time.Minute + time.Second, 29 * time.Minute, 31 * time.Minute, 31 * time.Minute, 52 * time.Minute, 56 * time.Minute, 2 * time.Hour, 22 * time.Hour, 23 * time.Hour} {
		f.clock = now.Add(d)
		code, r, raw := f.do(t, "POST", "/get-online-features", body)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, raw)
		}
		for i, feat := range []string{"txn_count_1h", "amount_avg_24h"} {
			if got, want := r.Results[1+i].Values[0], f.value(t, "user_txn@1", feat, "u1", f.clock.UnixMilli()); got != want {
				t.Errorf("%s at now+%v = %v, want %v", feat, d, got, want)
			}
		}
	}
}

// count1h answers u1's txn_count_1h.
func (f *fixture) count1h(t *testing.T) any {
	t.Helper()
	code, r, raw := f.do(t, "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	return r.Results[1].Values[0]
}

// setU1 writes u1's user_txn@1 record to Redis: its state with one more
// event, applied at offset 100, or (more false) as the fixture wrote it.
func (f *fixture) setU1(t *testing.T, more bool) {
	t.Helper()
	eng := f.engines["user_txn@1"]
	st, applied := f.states["user_txn@1"]["u1"], map[int32]int64{0: 99}
	if more {
		var err error
		if st, err = eng.DecodeState(eng.AppendState(nil, st)); err != nil { // a copy
			t.Fatal(err)
		}
		applied = map[int32]int64{0: 100}
		src := f.defs.Source("payments")
		ev := &features.Event{Time: now.Add(-time.Minute).UnixMilli(), Offset: 100, Fields: make([]features.Value, len(src.Schema))}
		ev.Fields[src.Field("user_id")] = features.String("u1")
		ev.Fields[src.Field("card_id")] = features.Int(11)
		ev.Fields[src.Field("ts")] = features.Timestamp(ev.Time)
		if _, err := eng.Apply(st, ev); err != nil {
			t.Fatal(err)
		}
	}
	rec := online.EncodeState(eng, st, applied)
	if err := f.redis.Set(context.Background(), online.RedisKey("quiver", online.TableOf(eng.View()), "u1"), rec, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// A changed record is never answered from the decoded-state cache.
func TestCacheFollowsChanges(t *testing.T) {
	f := newFixture(t)
	before := f.count1h(t)
	f.count1h(t) // from the cache
	f.setU1(t, true)
	if after := f.count1h(t); after != before.(float64)+1 {
		t.Fatalf("txn_count_1h after one more event = %v, want %v", after, before.(float64)+1)
	}
}

// TestCacheNeverGoesBack: over Redis, a record older than one answered
// just before (a stale read of go-redis's client-side cache) is not
// answered; one that is older long after is a reset, and is.
func TestCacheNeverGoesBack(t *testing.T) {
	f := newFixture(t)
	before := f.count1h(t)
	f.setU1(t, true)
	newer := f.count1h(t)
	if newer != before.(float64)+1 {
		t.Fatalf("txn_count_1h after one more event = %v, want %v", newer, before.(float64)+1)
	}
	f.setU1(t, false)
	if got := f.count1h(t); got != newer {
		t.Errorf("txn_count_1h = %v after the store went back to an older record, want %v as answered before", got, newer)
	}
	f.clock = now.Add(2 * time.Second)
	if got := f.count1h(t); got != before {
		t.Errorf("txn_count_1h = %v two seconds after the store went back, want the store's %v", got, before)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	if code, _, raw := f.do(t, "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h", "user_txn@1:amount_avg_24h"], "entities": {"user_id": ["u1"]}}`); code != 200 {
		t.Fatalf("lookup: %d %s", code, raw)
	}
	big := `{"features": ["user_txn:txn_count_1h"], "entities": {"user_id": [` + strings.Repeat(`"u1",`, 1000) + `"u1"]}}`
	huge := `{"features": ["user_txn:txn_count_1h"], "entities": {"user_id": ["` + strings.Repeat("x", 5<<20) + `"]}}`
	var many strings.Builder // 40,000 unknown fields: the error lists ten
	for i := range 40_000 {
		fmt.Fprintf(&many, `"f%d": 0, `, i)
	}
	manyFields := `{` + many.String() + `"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`
	var unknown strings.Builder // 90,000 unknown references: the error lists ten
	for i := range 90_000 {
		fmt.Fprintf(&unknown, `"v%d:f", `, i)
	}
	var twelve []string
	for i := range 12 {
		twelve = append(twelve, fmt.Sprintf(`"user_txn@1:f%d"`, i))
	}
	twelveUnknown := `{"features": [` + strings.Join(twelve, ", ") + `], "entities": {"user_id": ["u1"]}}`
	manyUnknown := `{"features": [` + unknown.String() + `"user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`
	long := strings.Repeat("é", 200_000) // echoed in part, cut on a rune boundary
	for _, c := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"malformed JSON", "POST", "/get-online-features", `{"features": [`, 400, "request body is not valid JSON"},
		{"not an object", "POST", "/get-online-features", `[1, 2]`, 400, "must be a JSON object"},
		{"empty body", "POST", "/get-online-features", ``, 400, "not valid JSON"},
		{"unknown field", "POST", "/get-online-features", `{"featurs": ["user_txn:txn_count_1h"], "entities": {"user_id": ["u1"]}}`, 400, `unknown field "featurs"`},
		{"no features", "POST", "/get-online-features", `{"entities": {"user_id": ["u1"]}}`, 400, "give features"},
		{"both", "POST", "/get-online-features", `{"features": ["user_txn:txn_count_1h"], "feature_service": "risk", "entities": {"user_id": ["u1"]}}`, 400, "not both"},
		{"empty features", "POST", "/get-online-features", `{"features": [], "entities": {"user_id": ["u1"]}}`, 400, "features is empty"},
		{"feature not a string", "POST", "/get-online-features", `{"features": [3], "entities": {"user_id": ["u1"]}}`, 400, "features[0] must be a string"},
		{"unknown features, all listed", "POST", "/get-online-features", `{"features": ["user_txn:nope", "user_txn@1:txn_count_1h", "ghost@1:x", "user_txn@9:txn_count_1h", "bad"], "entities": {"user_id": ["u1"]}}`, 400,
			`unknown features: user_txn:nope: view user_txn@2 has no feature nope; ghost@1:x: no view ghost; user_txn@9:txn_count_1h: view user_txn has no version 9; feature reference "bad"`},
		{"unknown features and a wrong join key", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h", "ghost@1:x"], "entities": {"merchant_id": ["m1"]}}`, 400,
			"3 problems: unknown features: ghost@1:x: no view ghost; entities.merchant_id is not a join key of the requested features (they need user_id); join key user_id is missing from entities (user_txn@1 needs it)"},
		{"feature listed twice", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h", "user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`, 400,
			"user_txn@1:txn_count_1h is listed twice"},
		{"feature listed twice by two names", "POST", "/get-online-features", `{"features": ["user_txn:txn_count_1h", "user_txn@2:txn_count_1h", "ghost:x"], "entities": {"user_id": ["u1"]}}`, 400,
			"2 problems: unknown features: ghost:x: no view ghost; user_txn@2:txn_count_1h is user_txn@2:txn_count_1h, already listed as user_txn:txn_count_1h"},
		// Plans are kept by feature list: one reference holding a NUL
		// must not find the plan of the list of two it joins like.
		{"NUL in a reference", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h\u0000user_txn@1:amount_avg_24h"], "entities": {"user_id": ["u1"]}}`, 400, "unknown features"},
		{"nested too deep", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}, "request_context": {"x": ` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}}`, 400,
			"request body nests JSON deeper than 300 levels"},
		{"unknown service", "POST", "/get-online-features", `{"feature_service": "nope", "entities": {"user_id": ["u1"]}}`, 400, `unknown feature service "nope"`},
		{"missing join key", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": [1]}}`, 400, "join key merchant_id is missing from entities (pair_txn@1 needs it)"},
		{"extra join key", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"], "card_id": [1]}}`, 400, "entities.card_id is not a join key of the requested features (they need user_id)"},
		{"no entities", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"]}`, 400, "entities is missing"},
		{"empty entities", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {}}`, 400, "entities is empty"},
		{"no values", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": []}}`, 400, "entities has no values"},
		{"ragged columns", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": [1, 2], "merchant_id": ["m1"]}}`, 400, "entities.merchant_id has 1 values, entities.card_id 2"},
		{"join key of the wrong type", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": ["11"], "merchant_id": ["m1"]}}`, 400, "entities.card_id[0] must be an integer"},
		{"join key not a scalar", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": [null]}}`, 400, "entities.user_id[0] must be a string or an integer, not null"},
		{"fractional join key", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": [1.5], "merchant_id": ["m1"]}}`, 400, "not the number 1.5"},
		{"join key written as a float", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": [42.0], "merchant_id": ["m1"]}}`, 400, "must be a string or an integer, not the number 42.0"},
		{"join key out of range", "POST", "/get-online-features", `{"features": ["pair_txn@1:amount_sum_24h"], "entities": {"card_id": [9223372036854775808], "merchant_id": ["m1"]}}`, 400, "not the number 9223372036854775808 (out of the int64 range)"},
		{"key given twice", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"], "user_id": ["u2"]}}`, 400, "entities.user_id is given twice"},
		{"field given twice", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}, "entities": {"user_id": ["u2"]}}`, 400, `field "entities" is given twice`},
		{"many problems", "POST", "/get-online-features", manyFields, 400, `40000 problems: unknown field "f0" (want features or feature_service, entities, request_context, full_feature_names); unknown field "f1"`},
		{"many problems, the rest counted", "POST", "/get-online-features", manyFields, 400, `unknown field "f37" (want features or feature_service, entities, request_context, full_feature_names); and 39962 more`},
		{"many unknown features", "POST", "/get-online-features", manyUnknown, 400, "unknown features: v0:f: no view v0; v1:f: no view v1; "},
		{"many unknown features, the rest counted", "POST", "/get-online-features", manyUnknown, 400, "v47:f: no view v47; and 89952 more"},
		{"twelve unknown features, every one listed", "POST", "/get-online-features", twelveUnknown, 400,
			"user_txn@1:f10: view user_txn@1 has no feature f10; user_txn@1:f11: view user_txn@1 has no feature f11"},
		{"long unknown service", "POST", "/get-online-features", `{"feature_service": "` + long + `", "entities": {"user_id": ["u1"]}}`, 400, `unknown feature service "éé`},
		{"long unknown field", "POST", "/get-online-features", `{"` + long + `": 1, "features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`, 400, `unknown field "éé`},
		{"long unknown fields", "POST", "/get-online-features", `{"` + long + `": 1, "` + long + `x": 1, "features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`, 400, `éé…; unknown field "éé`},
		{"request context key given twice", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": 1, "amount": 2}}`, 400, "request_context.amount is given twice"},
		{"too many entities", "POST", "/get-online-features", big, 400, "too many entities: 1001 in entities.user_id, at most 1000"},
		{"oversized body", "POST", "/get-online-features", huge, 413, "larger than the limit"},
		// 1.2 MB: decoded, it would take about 100 MB.
		{"too many values", "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}, "request_context": {"x": [` + strings.Repeat("0,", 600_000) + `0]}}`, 413,
			"request body holds more than 100000 JSON values"},
		{"a prediction without models", "POST", "/v1/models/fraud/predict", `{"entities": {`, 404, "no models: serve runs without --models"},
		{"missing request context", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}}`, 400, "request_context.amount is missing"},
		{"request context of the wrong length", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": [1, 2]}}`, 400, "request_context.amount has 2 values for 1 entities"},
		{"request context of the wrong type", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": "12"}}`, 400,
			`on-demand feature amount_vs_avg cannot use request_context.amount = "12": no such overload`},
		{"request context of the wrong type, for an entity without state", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["nobody"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": "12"}}`, 400,
			`on-demand feature amount_vs_avg cannot use request_context.amount = "12": no such overload`},
		{"request context out of range", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": [1e400]}}`, 400,
			"request_context.amount holds the number 1e400, out of the float64 range"},
		{"one entity's request context of the wrong type", "POST", "/get-online-features", `{"feature_service": "risk", "entities": {"user_id": ["u1", "u2"], "card_id": [11, 21], "merchant_id": ["m1", "m2"]}, "request_context": {"amount": [3, {"v": 1}]}}`, 400,
			`entity at index 1: on-demand feature amount_vs_avg cannot use request_context.amount = {"v":1}`},
		{"unknown route", "GET", "/nope", "", 404, "no such endpoint: GET /nope"},
		{"wrong method", "GET", "/get-online-features", "", 405, "method GET is not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, r, raw := f.do(t, c.method, c.path, c.body)
			if code != c.code || r.Code != c.code || !strings.Contains(r.Error, c.want) || len(r.Error) > 4096 || !utf8.ValidString(r.Error) {
				t.Errorf("got %d %s\nwant %d with an error containing %q", code, raw, c.code, c.want)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, "s3cret", "other-token")
	body := `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`
	for _, c := range []struct {
		name, header string
		code         int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"a prefix of a token", "Bearer s3cre", 401},
		{"not bearer", "Basic s3cret", 401},
		{"token", "Bearer s3cret", 200},
		{"second token", "Bearer other-token", 200},
		{"the scheme in lower case", "bearer s3cret", 200},
		{"spaces after the scheme", "Bearer   s3cret", 200},
		{"no token after the scheme", "Bearer ", 401},
	} {
		code, r, raw := f.do(t, "POST", "/get-online-features", body, "Authorization", c.header)
		if code != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.name, code, c.code, raw)
		}
		if code == 401 && (r.Code != 401 || r.Error == "") {
			t.Errorf("%s: body %s, want a JSON error", c.name, raw)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _, raw := f.do(t, "GET", path, ""); code != 200 {
			t.Errorf("%s needs no token: got %d %s", path, code, raw)
		}
	}
	if code, _, _ := f.do(t, "GET", "/v1/feature-views", ""); code != 401 {
		t.Errorf("/v1/feature-views without a token: %d, want 401", code)
	}
}

// TestSetAuthTokens: tokens replaced while serving take effect from the
// next request; they can neither be emptied nor set on an open API.
func TestSetAuthTokens(t *testing.T) {
	f := newFixture(t, "old-token")
	if err := f.srv.SetAuthTokens([]string{"new-token"}); err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]int{"old-token": 401, "new-token": 200} {
		if code, _, raw := f.do(t, "GET", "/v1/feature-views", "", "Authorization", "Bearer "+token); code != want {
			t.Errorf("%s after the change: %d %s, want %d", token, code, raw, want)
		}
	}
	for _, tokens := range [][]string{nil, {"a", ""}} {
		if err := f.srv.SetAuthTokens(tokens); err == nil {
			t.Errorf("SetAuthTokens(%q): no error", tokens)
		}
	}
	if code, _, raw := f.do(t, "GET", "/v1/feature-views", "", "Authorization", "Bearer new-token"); code != 200 {
		t.Errorf("new-token after refused changes: %d %s, want 200", code, raw)
	}
	if err := newFixture(t).srv.SetAuthTokens([]string{"a"}); err == nil {
		t.Error("SetAuthTokens on an open API: no error")
	}
}

// TestDrain: a draining server answers /readyz 503 and /v2/health/ready
// 400 (the Open Inference Protocol's health APIs answer false with a 4xx),
// with a JSON body, and every other request as before.
func TestDrain(t *testing.T) {
	f := newFixture(t)
	f.srv.Drain()
	code, r, raw := f.do(t, "GET", "/readyz", "")
	if code != 503 || r.Code != 503 || r.Error != "shutting down" {
		t.Errorf("/readyz while draining: %d %s, want 503 shutting down", code, raw)
	}
	if code, r, raw := f.do(t, "GET", "/v2/health/ready", ""); code != 400 || r.Code != 400 || r.Error != "shutting down" {
		t.Errorf("/v2/health/ready while draining: %d %s, want 400 shutting down", code, raw)
	}
	if code, _, raw := f.do(t, "POST", "/get-online-features", `{"features":["user_txn@1:txn_count_1h"],"entities":{"user_id":["u1"]}}`); code != 200 {
		t.Errorf("a lookup while draining: %d %s", code, raw)
	}
	if code, _, raw := f.do(t, "GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz while draining: %d %s", code, raw)
	}
}

func TestFeatureViews(t *testing.T) {
	f := newFixture(t)
	code, _, raw := f.do(t, "GET", "/v1/feature-views", "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, raw)
	}
	var out struct {
		Views []struct {
			Ref, Fingerprint string
			Latest           bool
			JoinKeys         []string `json:"join_keys"`
			Features         []struct{ Name, Agg, Window string }
		} `json:"feature_views"`
		Services []struct {
			Name     string
			Features []string
		} `json:"feature_services"`
	}
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range out.Views {
		got = append(got, fmt.Sprintf("%s latest=%v keys=%v %s/%s/%s", v.Ref, v.Latest, v.JoinKeys, v.Features[0].Name, v.Features[0].Agg, v.Features[0].Window))
		if want := f.defs.View(v.Ref[:strings.Index(v.Ref, "@")], int(v.Ref[len(v.Ref)-1]-'0')).Fingerprint(f.defs); v.Fingerprint != want {
			t.Errorf("%s: fingerprint %s, want %s", v.Ref, v.Fingerprint, want)
		}
	}
	want := "[user_txn@1 latest=false keys=[user_id] txn_count_1h/count/1h user_txn@2 latest=true keys=[user_id] txn_count_1h/count/1h pair_txn@1 latest=true keys=[card_id merchant_id] amount_sum_24h/sum/24h]"
	if fmt.Sprint(got) != want {
		t.Errorf("views:\n%v\nwant\n%s", got, want)
	}
	if len(out.Services) != 2 || out.Services[0].Name != "risk" || len(out.Services[0].Features) != 2 || out.Services[1].Name != "user_risk" {
		t.Errorf("services: %+v", out.Services)
	}
}

func TestResponseIsValidJSON(t *testing.T) {
	f := newFixture(t)
	// Control characters and invalid UTF-8 in an entity value come back as
	// valid JSON.
	body := []byte(`{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["a\u0001b\"c", "` + "\xff" + `"]}}`)
	code, _, raw := f.do(t, "POST", "/get-online-features", string(body))
	if code != 200 && code != 400 {
		t.Fatalf("status %d: %s", code, raw)
	}
	if !bytes.Contains([]byte(raw), []byte(`a\u0001b\"c`)) && code == 200 {
		t.Errorf("entity value not escaped: %s", raw)
	}
}

// Lookups of the same entities at once share decoded states (run with
// -race): every one gets the same answer.
func TestConcurrentLookups(t *testing.T) {
	f := newFixture(t)
	body := `{"feature_service": "risk", "entities": {"merchant_id": ["m1", "m2"], "card_id": [11, 21], "user_id": ["u1", "u2"]}, "request_context": {"amount": 3}}`
	_, _, want := f.do(t, "POST", "/get-online-features", body)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, _, got := f.do(t, "POST", "/get-online-features", body); got != want {
					t.Errorf("got %s, want %s", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Over the Pebble replica, the state cache follows what the replica tells
// of changes rather than reading the store: while a user's state changes
// under concurrent lookups, no lookup answers an older state than one
// answered before it, and once the replica has applied the last state,
// every lookup answers it.
func TestWatchedCacheFollowsChanges(t *testing.T) {
	defs, err := features.Load("testdata/definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	view := defs.View("user_txn", 1)
	eng, err := features.NewEngine(defs, view)
	if err != nil {
		t.Fatal(err)
	}
	src := defs.Source("payments")
	users := []string{"u1", "u2", "u3"}
	states := map[string]*features.State{}
	var offset int64
	// next applies one more event of each user, and returns their records.
	next := func() []online.Record {
		var recs []online.Record
		for _, u := range users {
			if states[u] == nil {
				states[u] = eng.NewState()
			}
			offset++
			ev := &features.Event{Time: now.Add(-30*time.Minute).UnixMilli() + offset, Offset: offset, Fields: make([]features.Value, len(src.Schema))}
			ev.Fields[src.Field("user_id")] = features.String(u)
			ev.Fields[src.Field("ts")] = features.Timestamp(ev.Time)
			if _, err := eng.Apply(states[u], ev); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, online.Record{Table: online.TableOf(view), Key: u, Value: online.EncodeState(eng, states[u], map[int32]int64{0: offset})})
		}
		return recs
	}
	store, produce := startPebble(t, online.TableOf(view), next())
	srv, err := serve.New(serve.Config{Definitions: defs, Store: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	counts := func() ([]float64, error) {
		body := `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1", "u2", "u3"]}}`
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("POST", "/get-online-features", strings.NewReader(body)))
		var r response
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil || w.Code != http.StatusOK || len(r.Results) != 2 {
			return nil, fmt.Errorf("status %d: %s", w.Code, w.Body)
		}
		out := make([]float64, len(users))
		for i, v := range r.Results[1].Values {
			out[i], _ = v.(float64)
		}
		return out, nil
	}

	const updates = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			last := make([]float64, len(users))
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := counts()
				if err != nil {
					t.Error(err)
					return
				}
				for i := range users {
					if got[i] < last[i] {
						t.Errorf("%s: a lookup answered %v events after one answered %v", users[i], got[i], last[i])
						return
					}
				}
				last = got
			}
		})
	}
	for range updates {
		produce(next()...)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := counts()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, []float64{updates + 1, updates + 1, updates + 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %v long after the replica was given %d events of each user", got, updates+1)
		}
	}
	close(done)
	wg.Wait()
}

// TestNullOptionalFields: a null stands for an optional field left out, as
// clients of Feast's request model send it.
func TestNullOptionalFields(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{
		`{"feature_service": null, "features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}}`,
		`{"features": null, "feature_service": "risk", "entities": {"user_id": ["u1"], "card_id": [11], "merchant_id": ["m1"]}, "request_context": {"amount": 1}}`,
		`{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1"]}, "request_context": null, "full_feature_names": null}`,
	} {
		if code, _, raw := f.do(t, "POST", "/get-online-features", body); code != http.StatusOK {
			t.Errorf("%s\n-> %d %s, want 200", body, code, raw)
		}
	}
	if code, r, _ := f.do(t, "POST", "/get-online-features", `{"features": null, "feature_service": null, "entities": {"user_id": ["u1"]}}`); code != http.StatusBadRequest || !strings.Contains(r.Error, "give features (a list of feature references) or feature_service") {
		t.Errorf("neither features nor a service: %d %q", code, r.Error)
	}
}

// TestInvalidUTF8JoinKey: a join key holding bytes that are not UTF-8 is
// the entity ingest stored under the same key: both replace each such byte
// with U+FFFD.
// TestStoreUnavailable checks that a lookup the store cannot answer for
// now is a 503 the client may retry, not a 500 nor NOT_FOUND for every
// entity: with Redis down, with a Redis back but empty until ingest has
// seeded it again, and with the store closed. The log says when the store
// turns not ready, and ready again, once each.
func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t)
	body := `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["u1", "u2"]}}`
	lookup := func() (*httptest.ResponseRecorder, string) {
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, httptest.NewRequest("POST", "/get-online-features", strings.NewReader(body)))
		var e struct {
			Error string
			Code  int
		}
		if w.Code != http.StatusOK && (json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code != w.Code) {
			t.Errorf("status %d, body %s: want a JSON error with its code", w.Code, w.Body)
		}
		return w, e.Error
	}
	f.redisd.Kill()
	if w, msg := lookup(); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || !strings.Contains(msg, "retry later") {
		t.Errorf("with Redis down: status %d, Retry-After %q, error %q", w.Code, w.Header().Get("Retry-After"), msg)
	}
	// A request context of the wrong type is refused whatever the store.
	good := body
	body = `{"feature_service": "risk", "entities": {"user_id": ["u1", "u2"], "card_id": [11, 21], "merchant_id": ["m1", "m2"]}, "request_context": {"amount": [3, "12"]}}`
	if w, msg := lookup(); w.Code != http.StatusBadRequest || !strings.HasPrefix(msg, `entity at index 1: on-demand feature amount_vs_avg cannot use request_context.amount = "12": no such overload`) {
		t.Errorf("a request context of the wrong type with Redis down: status %d, error %q, want 400", w.Code, msg)
	}
	body = good
	f.redisd.Restart() // empty: it saved nothing
	waitFor(t, func() bool {
		w, msg := lookup()
		return w.Code == http.StatusServiceUnavailable && strings.Contains(msg, "the online store is not ready: redis: not seeded")
	}, "a 503 naming the unseeded Redis")
	var tables []online.Table
	for _, v := range f.defs.Views {
		tables = append(tables, online.TableOf(v))
	}
	ingesttest.MarkSeeded(t, f.redis, "quiver", tables...) // as ingest does, its states written again
	// Once /readyz says ready, a load balancer sends lookups: they answer.
	waitFor(t, func() bool {
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code == http.StatusOK
	}, "/readyz to say ready once Redis is seeded")
	if w, msg := lookup(); w.Code != http.StatusOK {
		t.Errorf("a lookup right after /readyz said ready: status %d, %s", w.Code, msg)
	}
	logs := f.logs.String()
	if strings.Count(logs, "online store not ready") != 1 || !strings.Contains(logs, "err=\"redis") || strings.Count(logs, "online store ready") != 1 {
		t.Errorf("log:\n%s\nwant one line saying the store is not ready, with the cause, and one that it is ready again", logs)
	}
	f.redis.Close()
	if w, _ := lookup(); w.Code != http.StatusServiceUnavailable {
		t.Errorf("with the store closed: status %d, body %s", w.Code, w.Body)
	}
}

// TestFlushedRedisNotFound: right after Redis lost its data, within the
// second lookups reuse the store's readiness for, an entity it no longer
// holds is a 503, not NOT_FOUND: a model would predict on nulls.
func TestFlushedRedisNotFound(t *testing.T) {
	f := newFixture(t)
	lookup := func(user string) (int, string) {
		code, _, raw := f.do(t, "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": ["`+user+`"]}}`)
		return code, raw
	}
	if code, raw := lookup("u1"); code != http.StatusOK || !strings.Contains(raw, "PRESENT") {
		t.Fatalf("u1 before the flush: %d %s", code, raw)
	}
	if err := f.redis.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if code, raw := lookup("u2"); code != http.StatusServiceUnavailable || !strings.Contains(raw, "not seeded") {
		t.Errorf("u2 right after the flush: %d %s, want a 503 saying Redis is not seeded", code, raw)
	}
}

// TestJoinKeySpellings checks that a join key reaches the entity ingest
// stored whichever way the two spell it: bytes that are not UTF-8 and
// escapes of lone UTF-16 surrogates are U+FFFD in both, and an escaped
// backslash is not an escape.
func TestJoinKeySpellings(t *testing.T) {
	for _, c := range []struct {
		name, event, request string // the user id, as JSON text
		key, status          string
	}{
		{"invalid UTF-8", `"caf` + "\xe9" + `"`, `"caf` + "\xe9" + `"`, "caf\ufffd", "PRESENT"},
		{"escaped lone surrogate", `"caf\ud800"`, `"caf\udfff"`, "caf\ufffd", "PRESENT"},
		{"lone surrogate as U+FFFD", `"caf\ud800"`, `"caf\ufffd"`, "caf\ufffd", "PRESENT"},
		{"surrogate pair", `"caf\ud83d\ude00"`, `"caf\ud83d\ude00"`, "caf\U0001f600", "PRESENT"},
		{"high surrogate before another escape", `"caf\ud800\u0041"`, `"caf\ufffdA"`, "caf\ufffdA", "PRESENT"},
		{"escaped backslash", `"caf\ud800"`, `"caf\\ud800"`, `caf\ud800`, "NOT_FOUND"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			src := f.defs.Source("payments")
			var ev features.Event
			raw := []byte(`{"user_id": ` + c.event + `, "card_id": 1, "merchant_id": "m1", "amount": 5, "country": "FR", "ts": ` +
				fmt.Sprint(now.Add(-10*time.Minute).UnixMilli()) + `}`)
			if err := src.DecodeJSON(raw, &ev); err != nil {
				t.Fatal(err)
			}
			eng := f.engines["user_txn@1"]
			st := eng.NewState()
			if _, err := eng.Apply(st, &ev); err != nil {
				t.Fatal(err)
			}
			key, _ := online.AppendEntityKey(nil, ev.Fields[src.Field("user_id")]) // as ingest keys it
			rec := online.EncodeState(eng, st, map[int32]int64{0: 99})
			if err := f.redis.Set(context.Background(), online.RedisKey("quiver", online.TableOf(f.defs.View("user_txn", 1)), string(key)), rec, 0).Err(); err != nil {
				t.Fatal(err)
			}
			code, r, body := f.do(t, "POST", "/get-online-features", `{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": [`+c.request+`]}}`)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if r.Results[0].Values[0] != c.key || r.Results[1].Statuses[0] != c.status {
				t.Errorf("entity %q %s, want %q %s: %s", r.Results[0].Values[0], r.Results[1].Statuses[0], c.key, c.status, body)
			}
		})
	}
}

// waitFor fails the test unless cond holds within five seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
	}
}
