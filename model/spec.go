package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/internal/regularfile"
)

// Spec is a version's model.yaml. Its Artifact and Profile are paths
// relative to the version's directory, or absolute.
type Spec struct {
	Format   string   `yaml:"format"`
	Artifact string   `yaml:"artifact"`
	Inputs   Inputs   `yaml:"inputs"`
	Output   string   `yaml:"output"`
	Batching Batching `yaml:"batching"`
	Device   string   `yaml:"device"`
	// Precision is the GPU's arithmetic for dense layers: fp32 (the
	// default) or tf32. The CPU computes in float32 whatever it says.
	Precision string `yaml:"precision"`
	Profile   string `yaml:"profile"`
	// Drift configures the drift detectors that watch the version's
	// predictions against Profile.
	Drift drift.Config `yaml:"drift"`
}

// Inputs names what a model reads: a feature service's features, then its
// on-demand features, in order.
type Inputs struct {
	FeatureService string `yaml:"feature_service"`
}

// Batching configures a version's dynamic batcher; zero fields take the
// batcher's defaults (batch.Config).
type Batching struct {
	MaxBatchSize  int           `yaml:"max_batch_size"`
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	QueueCapacity int           `yaml:"queue_capacity"` // at most batch.MaxQueueCapacity
}

// Aliases is a model's aliases.yaml.
type Aliases struct {
	Production int     `yaml:"production" json:"production"`
	Canary     *Canary `yaml:"canary" json:"canary,omitempty"`
	Shadow     int     `yaml:"shadow" json:"shadow,omitempty"`
}

// Live lists the versions that take requests: production, the canary's
// and the shadow, those set.
func (a Aliases) Live() []int {
	live := []int{a.Production}
	if a.Canary != nil {
		live = append(live, a.Canary.Version)
	}
	if a.Shadow != 0 {
		live = append(live, a.Shadow)
	}
	return live
}

// Canary sends a share of the traffic, sticky per entity, to a version.
type Canary struct {
	Version int     `yaml:"version" json:"version"`
	Traffic float64 `yaml:"traffic" json:"traffic"`
}

// yamlFile is a decoded YAML file that can say where its keys are.
type yamlFile struct {
	path string
	root *yaml.Node
}

// maxSpecBytes bounds a model.yaml or an aliases.yaml.
const maxSpecBytes = 1 << 20

// decodeFile decodes path, a regular file of at most maxSpecBytes,
// strictly (unknown keys are errors) into v.
func decodeFile(path string, v any) (*yamlFile, error) {
	src, err := regularfile.Read(path, maxSpecBytes)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, yamlError(path, nil, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file
		return nil, yamlError(path, &root, err)
	}
	if ps := fractions(path, &root, reflect.TypeOf(v), ""); len(ps) > 0 {
		return nil, errors.New(strings.Join(ps, "; "))
	}
	return &yamlFile{path: path, root: &root}, nil
}

// fractions returns a problem for each number with a fraction or an
// exponent that n gives an integer field of t: the decoder truncates
// them, and production: 2.9 would serve version 2. key is n's dotted key.
func fractions(path string, n *yaml.Node, t reflect.Type, key string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil // it reads its own node
	}
	var ps []string
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			ps = append(ps, fractions(path, c, t, key)...)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			for j := range t.NumField() {
				if tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ","); tag == name {
					sub := name
					if key != "" {
						sub = key + "." + name
					}
					ps = append(ps, fractions(path, n.Content[i+1], t.Field(j).Type, sub)...)
				}
			}
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			ps = append(ps, fractions(path, c, t.Elem(), fmt.Sprintf("%s[%d]", key, i))...)
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && t != reflect.TypeFor[time.Duration]() &&
		reflect.Int <= t.Kind() && t.Kind() <= reflect.Uint64:
		ps = append(ps, fmt.Sprintf("%s:%d: %s: %s: want a whole number", path, n.Line, key, n.Value))
	}
	return ps
}

// yamlError drops the decoder's "yaml: unmarshal errors:" preamble, and
// names each problem's file and line, and the key whose value it is about
// (from root, when the file parsed).
func yamlError(path string, root *yaml.Node, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "yaml: ")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		var line int
		if _, err := fmt.Sscanf(l, "line %d:", &line); err != nil {
			lines[i] = path + ": " + l
			continue
		}
		rest := strings.TrimSpace(l[strings.Index(l, ":")+1:])
		// The decoder quotes the value it could not use: `lots`; an
		// unknown key it names: "field trafic not found in type ...".
		value, quoted := "", false
		if _, after, ok := strings.Cut(rest, "`"); ok {
			value, _, quoted = strings.Cut(after, "`")
		}
		key := scalarAt(root, line, value, quoted, "")
		if name, ok := strings.CutPrefix(rest, "field "); ok {
			name, _, _ = strings.Cut(name, " ")
			key = keyAt(root, line, name, "")
		}
		if key != "" {
			rest = key + ": " + rest
		}
		lines[i] = fmt.Sprintf("%s:%d: %s", path, line, rest)
	}
	return errors.New(strings.Join(lines, "; "))
}

// scalarAt returns the dotted key of the scalar value on a line of a YAML
// tree under n (whose key is key), of the given value if quoted, or "".
func scalarAt(n *yaml.Node, line int, value string, quoted bool, key string) string {
	if n == nil {
		return ""
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Line == line && (!quoted || n.Value == value) {
			return key
		}
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := scalarAt(c, line, value, quoted, key); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			sub := n.Content[i].Value
			if key != "" {
				sub = key + "." + sub
			}
			if k := scalarAt(n.Content[i+1], line, value, quoted, sub); k != "" {
				return k
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if k := scalarAt(c, line, value, quoted, fmt.Sprintf("%s[%d]", key, i)); k != "" {
				return k
			}
		}
	}
	return ""
}

// keyAt returns the dotted path of the mapping key name on a line of a
// YAML tree under n (whose key is key), or "".
func keyAt(n *yaml.Node, line int, name, key string) string {
	if n == nil {
		return ""
	}
	for i, c := range n.Content {
		sub := key
		switch n.Kind {
		case yaml.MappingNode:
			if i%2 == 0 {
				if c.Line == line && c.Value == name {
					return strings.TrimPrefix(key+"."+name, ".")
				}
				continue
			}
			sub = strings.TrimPrefix(key+"."+n.Content[i-1].Value, ".")
		case yaml.SequenceNode:
			sub = fmt.Sprintf("%s[%d]", key, i)
		}
		if k := keyAt(c, line, name, sub); k != "" {
			return k
		}
	}
	return ""
}

// at returns "path:line: key.path" for a key of the file, or the path alone
// when the key is absent.
func (f *yamlFile) at(keys ...string) string {
	if _, line := f.find(keys...); line > 0 {
		return fmt.Sprintf("%s:%d: %s", f.path, line, strings.Join(keys, "."))
	}
	return fmt.Sprintf("%s: %s", f.path, strings.Join(keys, "."))
}

// has reports whether the file gives a key a value other than null.
func (f *yamlFile) has(keys ...string) bool {
	n, _ := f.find(keys...)
	return n != nil && n.Tag != "!!null"
}

// find returns the value of a key of the file, nil when absent, and the
// line of the deepest of its keys there (0: none).
func (f *yamlFile) find(keys ...string) (*yaml.Node, int) {
	n := f.root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil, line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		n = next
	}
	return n, line
}

// inDir resolves a path of a version's model.yaml: relative to the
// version's directory dir, unless absolute.
func inDir(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
