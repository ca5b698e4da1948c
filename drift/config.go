package drift

import (
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is how a model version is watched: model.yaml's drift section.
// Zero fields take the defaults each field's doc gives; Cooldown, whose 0
// means none, takes its default when nil. A model.yaml that writes 0 for
// window, slide, min_samples or consecutive, or for both thresholds, is
// refused rather than given the default.
type Config struct {
	// Disabled turns the detectors off for the version.
	Disabled bool `yaml:"disabled"`
	// Window is how many predictions (an integer) or how much prediction
	// time (a duration such as 5m) a window holds. Default 1000.
	Window Window `yaml:"window"`
	// Slide is how far a window moves between evaluations, in the unit of
	// Window, dividing it; a window is evaluated each time it moved. Default
	// Window: windows that do not overlap.
	Slide Window `yaml:"slide"`
	// MinSamples: windows with fewer predictions are not evaluated. Default
	// 100, or a count window's size if smaller; at most that size.
	MinSamples int `yaml:"min_samples"`
	// PSI and JS are thresholds: a feature drifts in a window when its
	// PSI, or its Jensen–Shannon distance, reaches it; 0 leaves a score
	// out. Default PSI 0.2, when neither is set.
	PSI float64 `yaml:"psi"`
	JS  float64 `yaml:"js"`
	// Rule decides when a window breaches: any (a feature drifted) or share
	// (at least Share of the watched features drifted). Default any.
	Rule  string  `yaml:"rule"`
	Share float64 `yaml:"share"`
	// Consecutive is how many breaching windows in a row make a sustained
	// breach, which sends a retraining event. Default 3.
	Consecutive int `yaml:"consecutive"`
	// Cooldown: after an event for a model, further breaches of any of its
	// versions send nothing for this much prediction time; 0 sends an
	// event for every sustained breach. Default (nil) 1h.
	Cooldown *Duration `yaml:"cooldown"`
	// Features are the watched inputs, by the names of the profile;
	// default all. The model's output is watched too when the profile has
	// it, unless Output is false.
	Features []string `yaml:"features"`
	Output   *bool    `yaml:"output"`
}

// Window is a size in predictions, or a duration of prediction time.
type Window struct {
	Count    int
	Duration time.Duration
}

// UnmarshalYAML reads an integer as a count and a string such as 5m as a
// duration. Zero is refused: the zero Window takes the default, but a
// window (or slide) written as 0 would hold nothing.
func (w *Window) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number of predictions or a duration", n.Line)
	}
	if c, err := strconv.Atoi(n.Value); err == nil {
		*w = Window{Count: c}
	} else if d, err := time.ParseDuration(n.Value); err == nil {
		*w = Window{Duration: d}
	} else {
		return fmt.Errorf("line %d: %q: want a number of predictions or a duration such as 5m", n.Line, n.Value)
	}
	if w.zero() {
		return fmt.Errorf("line %d: %s: want at least one prediction or a positive duration (leave it out for the default)", n.Line, n.Value)
	}
	return nil
}

func (w Window) zero() bool { return w.Count == 0 && w.Duration == 0 }

func (w Window) String() string {
	if w.Duration > 0 {
		return w.Duration.String()
	}
	return strconv.Itoa(w.Count) + " predictions"
}

// Duration is a duration of model.yaml: 10m, 1h30m, or 0.
type Duration time.Duration

// UnmarshalYAML reads what time.ParseDuration does: a bare 0 too, which a
// time.Duration field refuses as an integer.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q: want a duration such as 10m, or 0", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Rules over features.
const (
	RuleAny   = "any"
	RuleShare = "share"
)

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Window.zero() {
		c.Window = Window{Count: 1000}
	}
	if c.Slide.zero() {
		c.Slide = c.Window
	}
	if c.MinSamples == 0 {
		c.MinSamples = 100
		if c.Window.Count > 0 { // a smaller window is scored when full
			c.MinSamples = min(c.MinSamples, c.Window.Count)
		}
	}
	if c.PSI == 0 && c.JS == 0 {
		c.PSI = 0.2
	}
	if c.Rule == "" {
		c.Rule = RuleAny
	}
	if c.Consecutive == 0 {
		c.Consecutive = 3
	}
	if c.Cooldown == nil {
		c.Cooldown = new(Duration(time.Hour))
	}
	return c
}

// Problem is what is wrong with a field of a Config.
type Problem struct {
	Field   string // the YAML key
	Message string
}

// Check returns the problems of c, defaults applied.
func (c Config) Check() []Problem {
	c = c.WithDefaults()
	var ps []Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{field, fmt.Sprintf(format, args...)})
	}
	switch {
	case c.Window.Count < 0 || c.Window.Duration < 0:
		add("window", "must be positive")
	case c.Slide.Count < 0 || c.Slide.Duration < 0:
		add("slide", "must be positive")
	case (c.Window.Count > 0) != (c.Slide.Count > 0):
		add("slide", "%s: want the unit of window (%s)", c.Slide, c.Window)
	case c.Window.Count > 0 && c.Window.Count%c.Slide.Count != 0,
		c.Window.Duration > 0 && c.Window.Duration%c.Slide.Duration != 0:
		add("slide", "%s does not divide the window (%s)", c.Slide, c.Window)
	case c.panes() > maxPanes:
		add("slide", "%s makes %d slides a window, more than %d", c.Slide, c.panes(), maxPanes)
	}
	if c.MinSamples < 0 {
		add("min_samples", "must not be negative")
	} else if c.Window.Count > 0 && c.MinSamples > c.Window.Count {
		add("min_samples", "%d is more than the window's %d predictions: no window would ever be scored", c.MinSamples, c.Window.Count)
	}
	if c.PSI < 0 {
		add("psi", "%g: a threshold must not be negative", c.PSI)
	}
	if c.JS < 0 || c.JS > 1 {
		add("js", "%g: want a Jensen–Shannon distance from 0 to 1", c.JS)
	}
	switch c.Rule {
	case RuleAny:
	case RuleShare:
		if !(c.Share > 0 && c.Share <= 1) {
			add("share", "%g: want a share above 0, at most 1", c.Share)
		}
	default:
		add("rule", "%q: want any or share", c.Rule)
	}
	if c.Consecutive < 0 {
		add("consecutive", "must be positive")
	}
	if *c.Cooldown < 0 {
		add("cooldown", "must not be negative")
	}
	return ps
}

// maxPanes bounds a window's memory: its slides are kept apart.
const maxPanes = 64

func (c Config) panes() int {
	if c.Window.Count > 0 {
		return c.Window.Count / max(c.Slide.Count, 1)
	}
	return int(c.Window.Duration / max(c.Slide.Duration, 1))
}

func (c Config) watchOutput() bool { return c.Output == nil || *c.Output }
