package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/model"
)

// FuzzModelYAML opens a repository whose one version's model.yaml is
// arbitrary bytes, beside the test model's artifact and the fraud demo's
// profile: Open serves the version or returns an error naming the file,
// never a panic; and LoadDetector, which the drift detectors read the same
// file with, agrees: it loads whenever Open does, and names the file when
// it does not. A version Open serves routes and takes the service's 10
// inputs. Its seeds are the test model's model.yaml and the repository
// tests' specs.
func FuzzModelYAML(f *testing.F) {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		f.Fatal(err)
	}
	profile, err := os.ReadFile("../examples/fraud/models/fraud/1/profile.json")
	if err != nil {
		f.Fatal(err)
	}
	spec, err := os.ReadFile("testdata/models/fraud/1/model.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(spec)
	for _, s := range []string{
		goodSpec,
		goodSpec + "profile: profile.json\ndrift:\n  window: 5m\n  slide: 1m\n  js: 0.3\n  rule: share\n  share: 0.5\n  features: [user_txn__txn_count_1h]\n",
		goodSpec + "profile: profile.json\ndrift: {window: 50, min_samples: 80}\n",
		goodSpec + "batching: {queue_capacity: 5, max_batch_size: lots}\n",
		goodSpec + "device: tpu\noutput: logits\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := repoWith(t, "", "")
		vdir := filepath.Join(dir, "fraud", "1")
		path := filepath.Join(vdir, "model.yaml")
		for name, b := range map[string][]byte{"model.yaml": data, "profile.json": profile} {
			if err := os.WriteFile(filepath.Join(vdir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, derr := model.LoadDetector(dir, defs, "fraud", 1)
		if derr != nil && !strings.Contains(derr.Error(), path) {
			t.Fatalf("LoadDetector: error %q does not name %s", derr, path)
		}
		repo, err := model.Open(model.Config{Dir: dir, Definitions: defs})
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: error %q does not name %s", err, path)
			}
			return
		}
		defer repo.Close()
		if derr != nil {
			t.Fatalf("Open serves the version, LoadDetector refuses it: %v", derr)
		}
		v, _, err := repo.Route("fraud", "u1")
		if err != nil || v == nil || v.Version != 1 || v.NumFeatures() != 10 {
			t.Fatalf("route: %+v, %v; want version 1, of 10 inputs", v, err)
		}
	})
}

// FuzzAliasesYAML opens a repository whose aliases.yaml is arbitrary bytes
// (none when empty) beside version 1 of the test model: Open returns an
// error naming the file, never a panic, or aliases that name version 1 and
// a canary's share from 0 to 1, which routes to version 1. Its seeds are the
// repository tests' aliases.
func FuzzAliasesYAML(f *testing.F) {
	defs, err := features.Load("../examples/fraud/definitions.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"production: 1\n",
		"production: 1\ncanary: {version: 1, traffic: 0.1}\nshadow: 1\n",
		"production: 1\ncanary: {version: 1, traffic: 1.5}\n",
		"production: 1\ncanary: 2\n",
		"production: 7\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := repoWith(t, goodSpec, string(data))
		path := filepath.Join(dir, "fraud", "aliases.yaml")
		repo, err := model.Open(model.Config{Dir: dir, Definitions: defs})
		if err != nil {
			if len(data) == 0 || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			return
		}
		defer repo.Close()
		a := repo.Models()["fraud"].Aliases
		if a.Production != 1 || a.Shadow != 0 && a.Shadow != 1 ||
			a.Canary != nil && (a.Canary.Version != 1 || !(a.Canary.Traffic >= 0 && a.Canary.Traffic <= 1)) {
			t.Fatalf("aliases %+v (canary %+v) of a model of version 1", a, a.Canary)
		}
		for _, entity := range []string{"u1", "", "\xff\xff"} {
			v, shadow, err := repo.Route("fraud", entity)
			if err != nil || v == nil || v.Version != 1 || (a.Shadow == 0) != (shadow == nil) || shadow != nil && shadow != v {
				t.Fatalf("route %q: %+v, %+v, %v; want version 1", entity, v, shadow, err)
			}
		}
	})
}
