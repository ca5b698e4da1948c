package features

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnknownFeature is returned for a reference to a view, version or
	// feature that is not defined.
	ErrUnknownFeature = errors.New("features: unknown feature")
	// ErrVersionNotBumped is returned by Registry.Register when a registered
	// view's definition changed but its version did not.
	ErrVersionNotBumped = errors.New("definition changed without a version bump")
	// ErrCorruptState is returned when an encoded state cannot be decoded.
	ErrCorruptState = errors.New("features: corrupt state")
	// ErrStateMismatch is returned when an encoded state was written by a
	// different definition of the view.
	ErrStateMismatch = errors.New("features: state written by another definition")
	// ErrEvaluateBeforeLastEvent is returned when a state is evaluated at a
	// time earlier than its latest applied event.
	ErrEvaluateBeforeLastEvent = errors.New("features: evaluation time before the latest event")
)

// Error is one problem in a set of definitions.
type Error struct {
	Pos  Pos
	Path string // the field, e.g. feature_views[0].features[2].window
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Path + ": " + e.Msg
}

// Errors is every problem Load found, sorted by file and line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return fmt.Sprintf("definitions: %d problem(s):\n%s", len(es), strings.Join(lines, "\n"))
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
