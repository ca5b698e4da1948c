package features_test

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
)

// defCases lists the files and directories directly inside dir: each is one
// test case for Load.
func defCases(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || isDefFile(p) {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		t.Fatalf("no test cases in %s", dir)
	}
	return paths
}

func isDefFile(p string) bool {
	ext := filepath.Ext(p)
	return ext == ".yaml" || ext == ".yml"
}

// defFiles returns path itself, or every YAML file below the directory path.
func defFiles(t *testing.T, path string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && isDefFile(p) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGoodDefinitions(t *testing.T) {
	for _, path := range defCases(t, filepath.Join("testdata", "good")) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			defs, err := features.Load(path)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			if defs == nil || defs.Project == "" || len(defs.Views) == 0 {
				t.Fatalf("Load(%s) = %+v; want a project with views", path, defs)
			}
		})
	}
}

// defDiag is one error, expected or reported.
type defDiag struct {
	file string
	line int
	msg  string
}

func (d defDiag) String() string { return fmt.Sprintf("%s:%d: %s", d.file, d.line, d.msg) }

const defErrorMarker = "# ERROR "

// defExpectedErrors reads the `# ERROR "message"` comments of a file: each quoted
// (Go syntax, "..." or `...`) message is an error expected on that line.
func defExpectedErrors(t *testing.T, file string) []defDiag {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []defDiag
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		_, rest, ok := strings.Cut(sc.Text(), defErrorMarker)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if rest == "" {
			t.Fatalf("%s:%d: %s with no message", file, line, strings.TrimSpace(defErrorMarker))
		}
		for rest != "" {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("%s:%d: bad expectation %q: %v", file, line, rest, err)
			}
			msg, _ := strconv.Unquote(q)
			want = append(want, defDiag{file, line, msg})
			rest = strings.TrimSpace(rest[len(q):])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return want
}

func TestBadDefinitions(t *testing.T) {
	for _, path := range defCases(t, filepath.Join("testdata", "bad")) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			files := defFiles(t, path)
			var want []defDiag
			for _, f := range files {
				want = append(want, defExpectedErrors(t, f)...)
			}
			if len(want) == 0 {
				t.Fatalf("%s: no %q comments", path, strings.TrimSpace(defErrorMarker))
			}

			defs, err := features.Load(path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded; want errors:\n%s", path, defDiagList(want))
			}
			if defs != nil {
				t.Errorf("Load(%s) returned definitions along with an error", path)
			}
			var errs features.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) error is %T, not features.Errors: %v", path, err, err)
			}
			if len(errs) == 0 {
				t.Fatalf("Load(%s) returned an empty features.Errors", path)
			}

			var got []defDiag
			for i, e := range errs {
				if !slices.Contains(files, e.Pos.File) {
					t.Errorf("error %q: Pos.File %q is not one of %q", e, e.Pos.File, files)
				}
				if e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Errorf("error %q: position %d:%d is not 1-based", e, e.Pos.Line, e.Pos.Col)
				}
				if i > 0 && defPosLess(e.Pos, errs[i-1].Pos) {
					t.Errorf("errors not sorted: %q before %q", errs[i-1], e)
				}
				msg := e.Msg
				if e.Path != "" {
					msg = e.Path + ": " + e.Msg
				}
				if !strings.Contains(e.Error(), msg) {
					t.Errorf("Error() = %q does not contain %q", e.Error(), msg)
				}
				got = append(got, defDiag{e.Pos.File, e.Pos.Line, msg})
			}
			if !strings.Contains(err.Error(), errs[0].Error()) {
				t.Errorf("Errors.Error() = %q does not contain its first error %q", err, errs[0])
			}

			missing, unexpected := defDiagMissing(want, got), defDiagMissing(got, want)
			for _, d := range missing {
				t.Errorf("missing error:    %s", d)
			}
			for _, d := range unexpected {
				t.Errorf("unexpected error: %s", d)
			}
		})
	}
}

func defPosLess(a, b features.Pos) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}

// defDiagMissing returns the diagnostics of a that b lacks, counting repeats.
func defDiagMissing(a, b []defDiag) []defDiag {
	left := map[defDiag]int{}
	for _, d := range b {
		left[d]++
	}
	var out []defDiag
	for _, d := range a {
		if left[d] > 0 {
			left[d]--
			continue
		}
		out = append(out, d)
	}
	return out
}

func defDiagList(ds []defDiag) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "\t%s\n", d)
	}
	return b.String()
}

func TestLoadMissingPath(t *testing.T) {
	defs, err := features.Load(filepath.Join("testdata", "no-such-file.yaml"))
	if err == nil || defs != nil {
		t.Fatalf("Load(missing) = %v, %v; want an error", defs, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestLoadEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	// Files that are not YAML do not count.
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("project: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, err := features.Load(dir)
	if err == nil || defs != nil {
		t.Fatalf("Load(empty dir) = %v, %v; want an error", defs, err)
	}
	if !strings.Contains(err.Error(), "no .yaml or .yml files") {
		t.Errorf("Load(empty dir) error = %v", err)
	}
}

func TestLoadExample(t *testing.T) {
	defs, err := features.Load(filepath.Join("..", "examples", "fraud", "definitions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if defs.Project != "fraud" {
		t.Errorf("Project = %q, want fraud", defs.Project)
	}
	for _, ref := range []string{"user_txn@1", "merchant_txn@1"} {
		name, ver, _ := strings.Cut(ref, "@")
		n, _ := strconv.Atoi(ver)
		if v := defs.View(name, n); v == nil || v.Ref() != ref {
			t.Errorf("View(%s) = %v", ref, v)
		}
	}
	s := defs.Service("fraud_v1")
	if s == nil {
		t.Fatal("no service fraud_v1")
	}
	if len(s.Features) != 9 || len(s.OnDemand) != 1 {
		t.Errorf("fraud_v1 has %d features and %d on-demand; want 9 and 1", len(s.Features), len(s.OnDemand))
	}
	for _, r := range s.Features {
		if _, _, err := defs.Resolve(r); err != nil {
			t.Errorf("Resolve(%s): %v", r, err)
		}
	}
}

func mustLoadDefs(t *testing.T, path string) *features.Definitions {
	t.Helper()
	defs, err := features.Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return defs
}

func resolveDef(t *testing.T, defs *features.Definitions, ref string) (*features.View, *features.Feature) {
	t.Helper()
	r, err := features.ParseFeatureRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	v, f, err := defs.Resolve(r)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	return v, f
}

func TestGoodDefinitionsContent(t *testing.T) {
	defs := mustLoadDefs(t, filepath.Join("testdata", "good", "shop.yaml"))

	if e := defs.Entity("user_store"); e == nil || !slices.Equal(e.JoinKeys, []string{"store_id", "user_id"}) {
		t.Errorf("entity user_store = %+v; want join keys [store_id user_id] in that order", e)
	}

	src := defs.Source("orders")
	if src == nil {
		t.Fatal("no source orders")
	}
	wantSchema := []features.Field{
		{Name: "order_id", Type: features.TypeString},
		{Name: "user_id", Type: features.TypeString},
		{Name: "store_id", Type: features.TypeInt},
		{Name: "amount", Type: features.TypeFloat},
		{Name: "qty", Type: features.TypeInt},
		{Name: "paid", Type: features.TypeBool},
		{Name: "shipped_at", Type: features.TypeTimestamp},
		{Name: "ts", Type: features.TypeInt},
	}
	if !slices.Equal(src.Schema, wantSchema) {
		t.Errorf("orders schema = %v\nwant %v (declared order)", src.Schema, wantSchema)
	}
	if src.Format != "json" || src.AllowedLateness != time.Hour || src.EventTime != "ts" {
		t.Errorf("orders: format %q, allowed_lateness %v, event_time %q; want the defaults json and 1h, and ts",
			src.Format, src.AllowedLateness, src.EventTime)
	}
	if s := defs.Source("refunds"); s == nil || s.AllowedLateness != 15*time.Minute {
		t.Errorf("refunds = %+v; want allowed_lateness 15m", s)
	}
	if s := defs.Source("visits"); s == nil || s.AllowedLateness != 0 {
		t.Errorf("visits = %+v; want allowed_lateness 0", s)
	}

	for _, c := range []struct {
		ref                 string
		window, granularity time.Duration
	}{
		{"user_store_orders@1:orders_1h", time.Hour, time.Minute},                       // default: window/60
		{"user_store_orders@1:amount_sum_7d", 7 * 24 * time.Hour, 7 * 24 * time.Minute}, // "7d"
		{"user_store_orders@1:amount_avg_24h", 24 * time.Hour, time.Hour},               // explicit
		{"user_store_orders@1:qty_max_90m", 90 * time.Minute, 90 * time.Second},         // default
		{"user_store_orders@1:amount_min_1m", time.Minute, time.Second},                 // explicit, 60 tiles
		{"user_store_orders@1:orders_lifetime", 0, 0},                                   // lifetime
		{"user_store_orders@1:last_amount", 0, 0},                                       // lifetime
	} {
		_, f := resolveDef(t, defs, c.ref)
		if f.Window != c.window || f.Granularity != c.granularity {
			t.Errorf("%s: window %v granularity %v; want %v and %v", c.ref, f.Window, f.Granularity, c.window, c.granularity)
		}
	}

	v := defs.View("user_store_orders", 1)
	if v == nil {
		t.Fatal("no view user_store_orders@1")
	}
	if v.Filter != "e.paid == true && e.amount > 0.0" || v.TTL != 30*24*time.Hour {
		t.Errorf("user_store_orders@1: filter %q, ttl %v", v.Filter, v.TTL)
	}
	var names []string
	for _, f := range v.Features {
		names = append(names, f.Name)
	}
	if want := []string{"orders_1h", "amount_sum_7d", "amount_avg_24h", "qty_max_90m", "amount_min_1m", "orders_lifetime", "last_amount", "stores_30d", "amount_std_1h", "first_ship_24h"}; !slices.Equal(names, want) {
		t.Errorf("features in order %v; want %v", names, want)
	}
	if _, f := resolveDef(t, defs, "user_store_orders:last_amount"); f.Agg != features.AggLast || f.Field != "amount" {
		t.Errorf("last_amount = %+v", f)
	}

	s := defs.Service("checkout")
	if s == nil || len(s.OnDemand) != 2 || s.OnDemand[0].Name != "amount_vs_avg" {
		t.Fatalf("service checkout = %+v", s)
	}
	var refs []string
	for _, r := range s.Features {
		refs = append(refs, r.String())
	}
	if want := []string{"user_store_orders@1:orders_1h", "user_store_orders:amount_avg_24h", "user_refunds@1:refunds_24h"}; !slices.Equal(refs, want) {
		t.Errorf("checkout features %q; want %q (declared order)", refs, want)
	}
}

func TestGoodDefinitionsDefaults(t *testing.T) {
	defs := mustLoadDefs(t, filepath.Join("testdata", "good", "minimal.yaml"))
	src := defs.Source("pings")
	if src == nil || src.Format != "json" || src.AllowedLateness != time.Hour {
		t.Errorf("source pings = %+v; want format json and allowed_lateness 1h by default", src)
	}
	v := defs.View("device_pings", 0)
	if v == nil || v.Filter != "" || v.TTL != 0 || len(defs.Services) != 0 {
		t.Fatalf("view device_pings = %+v, services %v", v, defs.Services)
	}
	if f := v.Feature("pings"); f == nil || f.Window != 0 || f.Granularity != 0 {
		t.Errorf("pings = %+v; want a lifetime feature", f)
	}
	if f := v.Feature("pings_7d"); f == nil || f.Window != 7*24*time.Hour || f.Granularity != 7*24*time.Hour/60 {
		t.Errorf("pings_7d = %+v; want window 7d and granularity window/60", f)
	}
}

func TestGoodDefinitionsVersions(t *testing.T) {
	defs := mustLoadDefs(t, filepath.Join("testdata", "good", "versions.yaml"))
	for _, ver := range []int{1, 2, 3} {
		if v := defs.View("clicks", ver); v == nil || v.Version != ver {
			t.Errorf("View(clicks, %d) = %v", ver, v)
		}
	}
	if v := defs.View("clicks", 0); v == nil || v.Version != 3 {
		t.Errorf("View(clicks, 0) = %v; want version 3, the highest", v)
	}
	if v := defs.View("clicks", 4); v != nil {
		t.Errorf("View(clicks, 4) = %v; want nil", v)
	}

	// view:feature resolves to the highest version; view@n:feature to n.
	for _, c := range []struct {
		ref  string
		view string
	}{
		{"clicks:clicks_1h", "clicks@3"},
		{"clicks@1:clicks_1h", "clicks@1"},
		{"clicks@2:clicks_1h", "clicks@2"},
		{"clicks@3:clicks_1h", "clicks@3"},
	} {
		if v, _ := resolveDef(t, defs, c.ref); v.Ref() != c.view {
			t.Errorf("Resolve(%s) = %s; want %s", c.ref, v.Ref(), c.view)
		}
	}
	// v1's window differs from v3's: the feature comes from the resolved version.
	if _, f := resolveDef(t, defs, "clicks@1:clicks_1h"); f.Granularity != time.Minute {
		t.Errorf("clicks@1:clicks_1h granularity %v; want 1m", f.Granularity)
	}
	if _, f := resolveDef(t, defs, "clicks:clicks_1h"); f.Granularity != 5*time.Minute {
		t.Errorf("clicks:clicks_1h granularity %v; want 5m (from clicks@3)", f.Granularity)
	}

	// A feature only an older version has is not found through view:feature.
	for _, ref := range []string{"clicks:legacy_count", "clicks@2:legacy_count", "clicks@4:clicks_1h", "nope:clicks_1h"} {
		r, err := features.ParseFeatureRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := defs.Resolve(r); !errors.Is(err, features.ErrUnknownFeature) {
			t.Errorf("Resolve(%s) error = %v; want ErrUnknownFeature", ref, err)
		}
	}
	if _, f := resolveDef(t, defs, "clicks@1:legacy_count"); f.Agg != features.AggCount {
		t.Errorf("clicks@1:legacy_count = %+v", f)
	}
}

func TestGoodDefinitionsDirectory(t *testing.T) {
	defs := mustLoadDefs(t, filepath.Join("testdata", "good", "multi"))
	if defs.Project != "ads" {
		t.Errorf("Project = %q, want ads", defs.Project)
	}
	// Files are read in lexical order, subdirectories included.
	var views []string
	for _, v := range defs.Views {
		views = append(views, v.Ref())
	}
	if want := []string{"campaign_spend@1", "campaign_spend@2", "advertiser_spend@1"}; !slices.Equal(views, want) {
		t.Errorf("views %q; want %q", views, want)
	}
	if e := defs.Entity("advertiser"); e == nil {
		t.Error("no entity advertiser")
	}
	if s := defs.Service("bidder"); s == nil || len(s.Features) != 2 {
		t.Errorf("service bidder = %+v", s)
	}
	if v, _ := resolveDef(t, defs, "campaign_spend:spend_1h"); v.Version != 2 {
		t.Errorf("campaign_spend:spend_1h resolves to %s; want version 2", v.Ref())
	}
}

// TestLoadConfigMapDirectory loads a directory laid out as Kubernetes mounts
// a ConfigMap: each file is a link into ..data, a link to a hidden
// directory of the files. Each file is read once.
func TestLoadConfigMapDirectory(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "good", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "..2026_11_21_09_00_00.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "..2026_11_21_09_00_00.1", "defs.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2026_11_21_09_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "defs.yaml"), filepath.Join(dir, "defs.yaml")); err != nil {
		t.Fatal(err)
	}
	want := mustLoadDefs(t, filepath.Join("testdata", "good", "minimal.yaml"))
	if got := mustLoadDefs(t, dir); len(got.Views) != len(want.Views) || len(got.Entities) != len(want.Entities) {
		t.Errorf("loaded %d views and %d entities, want %d and %d", len(got.Views), len(got.Entities), len(want.Views), len(want.Entities))
	}
}

// TestLoadSymlinkedDirectory loads a directory through a link to it, as a
// deployment's "current" link to its latest release: its files are read,
// and errors name them under the link, as the user gave it, with their lines.
func TestLoadSymlinkedDirectory(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "good", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	release := func(name, file string, src []byte) string {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, file), src, 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "current-"+name)
		if err := os.Symlink(name, link); err != nil {
			t.Fatal(err)
		}
		return link
	}

	good := release("good", "defs.yaml", src)
	want := mustLoadDefs(t, filepath.Join("testdata", "good", "minimal.yaml"))
	if got := mustLoadDefs(t, good); len(got.Views) != len(want.Views) || len(got.Entities) != len(want.Entities) {
		t.Errorf("loaded %d views and %d entities, want %d and %d", len(got.Views), len(got.Entities), len(want.Views), len(want.Entities))
	}

	bad := release("bad", "defs.yaml", []byte("project: p\nentities:\n  - name: User\n    join_keys: []\n"))
	defs, err := features.Load(bad)
	var errs features.Errors
	if defs != nil || !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Load(%s) = %v, %v; want features.Errors, two of them", bad, defs, err)
	}
	for i, e := range errs {
		if want := filepath.Join(bad, "defs.yaml"); e.Pos.File != want || e.Pos.Line != 3+i {
			t.Errorf("%v: at %s:%d, want %s:%d", e, e.Pos.File, e.Pos.Line, want, 3+i)
		}
	}
}

func TestParseDefinitionsPositions(t *testing.T) {
	// Parse names positions after its name argument, and reports all problems.
	src := []byte("project: p\nentities:\n  - name: User\n    join_keys: []\n")
	defs, err := features.Parse("inline.yaml", src)
	var errs features.Errors
	if defs != nil || !errors.As(err, &errs) {
		t.Fatalf("Parse = %v, %v; want features.Errors", defs, err)
	}
	if len(errs) != 2 {
		t.Fatalf("got %d errors, want 2:\n%v", len(errs), err)
	}
	for _, e := range errs {
		if e.Pos.File != "inline.yaml" {
			t.Errorf("%v: file %q, want inline.yaml", e, e.Pos.File)
		}
	}
	if errs[0].Pos.Line != 3 || errs[1].Pos.Line != 4 {
		t.Errorf("errors at lines %d and %d, want 3 and 4", errs[0].Pos.Line, errs[1].Pos.Line)
	}
}

func TestParseDefinitionsAliasExpansion(t *testing.T) {
	// A few kilobytes of aliases to a list of aliases would expand into
	// millions of features; Parse stops at a bound and says why.
	const n = 2000
	var b strings.Builder
	b.WriteString("project: p\nentities: [{name: e, join_keys: [k]}]\n")
	b.WriteString("sources: [{name: s, topic: t, event_time: ts, schema: {k: string, ts: timestamp}}]\n")
	b.WriteString("feature_views:\n  - &view {name: v, version: 1, entity: e, source: s, features: &features [&feature {name: c, agg: count}")
	b.WriteString(strings.Repeat(", *feature", n))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *view\n", n))

	start := time.Now()
	defs, err := features.Parse("aliases.yaml", []byte(b.String()))
	var errs features.Errors
	if defs != nil || !errors.As(err, &errs) {
		t.Fatalf("Parse = %v, %v; want features.Errors", defs, err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Parse took %v", elapsed)
	}
	found := false
	for _, e := range errs {
		found = found || strings.HasPrefix(e.Msg, "aliases expand the document to more than ")
	}
	if !found || len(errs) > 200_000 {
		t.Errorf("got %d errors, none about aliases; want a bounded number, one about aliases", len(errs))
	}
}

// TestYAMLErrorPositions: a YAML error the parser gives no line for (an
// unknown anchor, a control character, bytes that are not UTF-8), or the
// line of what the problem is in, is reported where it is.
func TestYAMLErrorPositions(t *testing.T) {
	const head = "project: p\nentities:\n  - {name: user, join_keys: [user_id]}\n"
	for _, c := range []struct{ name, src, want string }{
		{"bad indent in a list", head + "feature_views:\n  - name: v\n    version: 1\n   bad: [\n", "defs.yaml:7:4: invalid YAML: did not find expected '-' indicator"},
		{"key outdented", head + "sources:\n  - a\n  - b\n bad: 1\n", "defs.yaml:7:2: invalid YAML: did not find expected key"},
		{"unclosed flow list", head + "sources: [\n", "defs.yaml:4:1: invalid YAML: did not find expected node content"},
		{"tab", head + "sources: 1\n\tx: 2\n", "defs.yaml:5:1: invalid YAML: found a tab character that violates indentation"},
		{"in a second document", head + "---\nsources:\n  - a\n  - b\n bad: 1\n", "defs.yaml:8:2: invalid YAML: did not find expected key"},
		{"unknown anchor", head + "sources: &nopex []\nx: *nopex\nfeature_views: *nope\n", "defs.yaml:6:16: invalid YAML: unknown anchor 'nope' referenced"},
		{"control character", head + "sources:\n  - name: a\x01\n", "defs.yaml:5:12: invalid YAML: control characters are not allowed"},
		{"not UTF-8", head + "sources:\n  - name: é\xff\n", "defs.yaml:5:12: invalid YAML: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := features.Parse("defs.yaml", []byte(c.src))
			if err == nil || !strings.Contains(err.Error(), "\n"+c.want) {
				t.Errorf("error %v, want a line starting %q", err, c.want)
			}
		})
	}
}
