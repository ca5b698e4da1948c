package model

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/features"
)

// detector returns the drift detector a version's model.yaml (f, decoded
// into spec) configures, nil when the version is not watched (no profile,
// or drift disabled), or the problems, named by file and line.
func detector(f *yamlFile, spec Spec, dir string, svc *features.Service) (*drift.Detector, []string) {
	var problems []string
	for _, p := range spec.Drift.Check() {
		problems = append(problems, fmt.Sprintf("%s: %s", f.at("drift", p.Field), p.Message))
	}
	problems = append(problems, zeros(f, spec.Drift)...)
	if len(problems) > 0 || spec.Profile == "" || spec.Drift.Disabled {
		return nil, problems
	}
	prof, err := drift.LoadProfile(inDir(dir, spec.Profile))
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", f.at("profile"), err)}
	}
	d, err := drift.NewDetector(spec.Drift, prof, svc.Columns())
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", f.at("drift"), err)}
	}
	return d, nil
}

// zeros returns the problems of drift fields written as 0, which Check
// cannot tell from fields left out for their defaults: a window of any
// size scored (min_samples), a breach of no windows (consecutive), and
// no threshold, so that nothing could drift (psi and js).
func zeros(f *yamlFile, c drift.Config) []string {
	var problems []string
	for _, z := range []struct {
		key  string
		zero bool
	}{{"min_samples", c.MinSamples == 0}, {"consecutive", c.Consecutive == 0}} {
		if z.zero && f.has("drift", z.key) {
			problems = append(problems, fmt.Sprintf("%s: 0: want at least 1 (leave it out for the default)", f.at("drift", z.key)))
		}
	}
	if c.PSI == 0 && c.JS == 0 && (f.has("drift", "psi") || f.has("drift", "js")) {
		key := "psi"
		if !f.has("drift", key) {
			key = "js"
		}
		problems = append(problems, fmt.Sprintf("%s: no threshold above 0, so no feature could drift: set psi or js above 0 (or disabled: true)", f.at("drift", key)))
	}
	return problems
}

// LoadDetector returns the drift detector of version version of model name
// in the repository dir, as its model.yaml configures it; nil when the
// version is not watched. Errors name the file and line. A name or version
// the repository would not serve (a path such as fraud/ or ../x, a hidden
// directory, a version below 1) is ErrUnknownModel.
func LoadDetector(dir string, defs *features.Definitions, name string, version int) (*drift.Detector, error) {
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") || version < 1 {
		return nil, fmt.Errorf("%w %q version %d", ErrUnknownModel, name, version)
	}
	vdir := filepath.Join(dir, name, strconv.Itoa(version))
	var spec Spec
	f, err := decodeFile(filepath.Join(vdir, "model.yaml"), &spec)
	if err != nil {
		return nil, err
	}
	svc := defs.Service(spec.Inputs.FeatureService)
	if svc == nil {
		return nil, fmt.Errorf("%s: no feature service %q in the definitions", f.at("inputs", "feature_service"), spec.Inputs.FeatureService)
	}
	d, problems := detector(f, spec, vdir, svc)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return d, nil
}
