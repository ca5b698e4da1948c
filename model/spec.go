package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/quiver-ml/quiver/drift"
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
	Profile  string   `yaml:"profile"`
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
// batcher's defaults.
type Batching struct {
	MaxBatchSize  int           `yaml:"max_batch_size"`
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	QueueCapacity int           `yaml:"queue_capacity"`
}

// Aliases is a model's aliases.yaml.
type Aliases struct {
	Production int     `yaml:"production" json:"production"`
	Canary     *Canary `yaml:"canary" json:"canary,omitempty"`
	Shadow     int     `yaml:"shadow" json:"shadow,omitempty"`
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

// decodeFile decodes path strictly (unknown keys are errors) into v.
func decodeFile(path string, v any) (*yamlFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, yamlError(err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file

		return nil, fmt.Errorf("%s: %w", path, yamlError(err))
	}
	return &yamlFile{path: path, root: &root}, nil
}

// yamlError drops the decoder's "yaml: unmarshal errors:" preamble.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "yaml: ")
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return errors.New(strings.Join(lines, "; "))
}

// at returns "path:line: key.path" for a key of the file, or the path alone
// when the key is absent.
func (f *yamlFile) at(keys ...string) string {
	n := f.root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		n = next
	}
	if line == 0 {
		return fmt.Sprintf("%s: %s", f.path, strings.Join(keys, "."))
	}
	return fmt.Sprintf("%s:%d: %s", f.path, line, strings.Join(keys, "."))
}

// inDir resolves a path of a version's model.yaml: relative to the
// version's directory dir, unless absolute.
func inDir(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
