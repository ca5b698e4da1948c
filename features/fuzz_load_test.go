package features_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// FuzzParse checks that Parse never panics and that it either returns
// definitions, or reports its problems as features.Errors with positions in
// the named file. Its seeds are every definition file in testdata.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{filepath.Join("testdata", "good"), filepath.Join("testdata", "bad")} {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !isDefFile(p) {
				return err
			}
			src, err := os.ReadFile(p)
			if err == nil {
				f.Add(src)
			}
			return err
		})
		if err != nil {
			f.Fatal(err)
		}
	}

	const name = "fuzz.yaml"
	f.Fuzz(func(t *testing.T, src []byte) {
		defs, err := features.Parse(name, src)
		if err == nil {
			if defs == nil {
				t.Fatal("Parse returned neither definitions nor an error")
			}
			// What validates is consistent: every reference resolves.
			for _, v := range defs.Views {
				if defs.Entity(v.Entity) == nil || defs.Source(v.Source) == nil {
					t.Errorf("view %s: entity %q or source %q is not defined", v.Ref(), v.Entity, v.Source)
				}
			}
			for _, s := range defs.Services {
				for _, r := range s.Features {
					if _, _, err := defs.Resolve(r); err != nil {
						t.Errorf("service %s: %v", s.Name, err)
					}
				}
			}
			return
		}
		if defs != nil {
			t.Fatalf("Parse returned definitions along with the error %v", err)
		}
		errs, ok := err.(features.Errors)
		if !ok {
			t.Fatalf("Parse error is %T, not features.Errors: %v", err, err)
		}
		if len(errs) == 0 {
			t.Fatal("Parse returned an empty features.Errors")
		}
		for _, e := range errs {
			if e == nil {
				t.Fatalf("nil *Error in %v", errs)
			}
			if e.Pos.Line < 1 || e.Pos.Col < 1 || e.Pos.File != name {
				t.Errorf("error %q: position %s; want a line and column in %s", e.Msg, e.Pos, name)
			}
			if e.Msg == "" {
				t.Errorf("error at %s has no message", e.Pos)
			}
		}
	})
}
