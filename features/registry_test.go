package features_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/store/offline"
)

func parse(t *testing.T, src string) *features.Definitions {
	t.Helper()
	defs, err := features.Parse("defs.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

func newRegistry(t *testing.T, dir string) *features.Registry {
	t.Helper()
	store, err := offline.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return features.NewRegistry(store)
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg := newRegistry(t, dir)
	v1 := parse(t, fpBase)

	if _, err := reg.Lookup(ctx, "v", 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup before registering: %v, want fs.ErrNotExist", err)
	}
	if err := reg.Register(ctx, v1); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	rec, err := reg.Lookup(ctx, "v", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := v1.View("v", 1).Fingerprint(v1); rec.Fingerprint != want {
		t.Fatalf("recorded fingerprint %s, want %s", rec.Fingerprint, want)
	}
	if err := reg.Register(ctx, v1); err != nil {
		t.Fatalf("registering the same definitions again: %v", err)
	}
	if err := reg.Register(ctx, parse(t, strings.Replace(fpBase, "ttl: 24h", "ttl: 96h", 1))); err != nil {
		t.Fatalf("a TTL change is not semantic: %v", err)
	}

	// The record is durable: a new registry over the same directory refuses a
	// changed definition, naming where the view is defined and what changed.
	changed := parse(t, strings.Replace(strings.Replace(fpBase, "window: 1h}", "window: 2h}", 1), `"e.amount > 0.0"`, `"e.amount > 5.0"`, 1))
	err = newRegistry(t, dir).Register(ctx, changed)
	if !errors.Is(err, features.ErrVersionNotBumped) {
		t.Fatalf("changed without a bump: %v, want ErrVersionNotBumped", err)
	}
	for _, want := range []string{"defs.yaml:12:14: feature_views[0].version: definition changed without a version bump: view v@1: ",
		"feature.n_1h.window: 1h → 2h", "filter: e.amount > 0.0 → e.amount > 5.0", "define it as version 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A field of the schema the view stops reading is still in the schema.
	moved := parse(t, strings.Replace(strings.Replace(fpBase, "event_time: ts", "event_time: seen", 1), "ts: timestamp}", "ts: timestamp, seen: timestamp}", 1))
	err = newRegistry(t, dir).Register(ctx, moved)
	if want := "view v@1: source.event_time: ts → seen; source.schema.seen now read (timestamp); source.schema.ts no longer read (was timestamp); define it"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("event time moved to another field: %v, want an error saying %q", err, want)
	}

	// The same change as version 2, beside version 1, is accepted.
	bothSrc := fpBase + strings.Replace(strings.Replace(strings.SplitN(fpBase, "feature_views:\n", 2)[1], "version: 1", "version: 2", 1), "window: 1h}", "window: 2h}", 1)
	both := parse(t, bothSrc)
	if both.View("v", 1) == nil || both.View("v", 2) == nil {
		t.Fatal("test definitions should hold v@1 and v@2")
	}
	if err := reg.Register(ctx, both); err != nil {
		t.Fatalf("a new version beside the old: %v", err)
	}
	if rec2, err := reg.Lookup(ctx, "v", 2); err != nil || rec2.Definition["feature.n_1h.window"] != "2h" {
		t.Fatalf("v@2 record: %+v, %v", rec2, err)
	}

	// A change refused is told a version neither defined nor registered:
	// 3, whether v@2 is defined beside it or only registered.
	for name, defs := range map[string]string{
		"beside v@2":          strings.Replace(bothSrc, "e.amount > 0.0", "e.amount > 5.0", 1),
		"v@2 registered only": strings.Replace(fpBase, "e.amount > 0.0", "e.amount > 5.0", 1),
	} {
		err := reg.Register(ctx, parse(t, defs))
		if !errors.Is(err, features.ErrVersionNotBumped) || !strings.Contains(err.Error(), "define it as version 3 instead") {
			t.Errorf("%s: %v, want to define it as version 3", name, err)
		}
	}
	// Two changed versions are each told a version of their own.
	err = reg.Register(ctx, parse(t, strings.ReplaceAll(bothSrc, "e.amount > 0.0", "e.amount > 5.0")))
	for _, want := range []string{"view v@1: filter: e.amount > 0.0 → e.amount > 5.0; define it as version 3 instead", "view v@2: filter: e.amount > 0.0 → e.amount > 5.0; define it as version 4 instead"} {
		if !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("both versions changed: %v, want %q", err, want)
		}
	}
}

// TestRegistryCheck checks definitions against the registry without
// registering them: a changed registered version is refused as Register
// refuses it, an unregistered version passes and stays unregistered.
func TestRegistryCheck(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, t.TempDir())
	v1 := parse(t, fpBase)
	if err := reg.Check(ctx, v1, v1.View("v", 1)); err != nil {
		t.Fatalf("an unregistered version: %v", err)
	}
	if _, err := reg.Lookup(ctx, "v", 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup after checking: %v, want fs.ErrNotExist", err)
	}
	if err := reg.Register(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(ctx, v1, v1.View("v", 1)); err != nil {
		t.Fatalf("the registered definition: %v", err)
	}
	changed := parse(t, strings.Replace(fpBase, "window: 1h}", "window: 2h}", 1))
	err := reg.Check(ctx, changed, changed.View("v", 1))
	if !errors.Is(err, features.ErrVersionNotBumped) || !strings.Contains(err.Error(), "feature.n_1h.window: 1h → 2h") {
		t.Fatalf("a changed definition: %v, want ErrVersionNotBumped naming the window", err)
	}
}

// TestRegistryConcurrent registers conflicting definitions of one version from
// many goroutines: exactly one definition wins, and every other attempt is
// refused, never silently overwritten.
func TestRegistryConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	variants := []*features.Definitions{
		parse(t, fpBase),
		parse(t, strings.Replace(fpBase, "window: 1h}", "window: 3h}", 1)),
	}
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { errs[i] = newRegistry(t, dir).Register(ctx, variants[i%2]) })
	}
	wg.Wait()
	rec, err := newRegistry(t, dir).Lookup(ctx, "v", 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		wins := variants[i%2].View("v", 1).Fingerprint(variants[i%2]) == rec.Fingerprint
		if wins && err != nil {
			t.Errorf("attempt %d matches the record but failed: %v", i, err)
		}
		if !wins && !errors.Is(err, features.ErrVersionNotBumped) {
			t.Errorf("attempt %d differs from the record: %v, want ErrVersionNotBumped", i, err)
		}
	}
}
