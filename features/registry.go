package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// RegistryStore is where a Registry keeps its records: the offline store,
// under _registry/. Names are slash-separated paths relative to that root.
type RegistryStore interface {
	// ReadFile returns the file's contents, or an error matching
	// fs.ErrNotExist.
	ReadFile(ctx context.Context, name string) ([]byte, error)
	// CreateFile writes a new file atomically; it fails with an error
	// matching fs.ErrExist if the file is already there.
	CreateFile(ctx context.Context, name string, data []byte) error
}

// Registry durably records which content each view version stands for, so a
// definition cannot change under a version that already computed state.
type Registry struct {
	store RegistryStore
	now   func() time.Time
}

// NewRegistry returns a registry kept in s.
func NewRegistry(s RegistryStore) *Registry { return &Registry{store: s, now: time.Now} }

// RegistryRecord is what the registry keeps per view version.
type RegistryRecord struct {
	View         string            `json:"view"`
	Version      int               `json:"version"`
	Fingerprint  string            `json:"fingerprint"`
	Definition   map[string]string `json:"definition"`
	RegisteredAt time.Time         `json:"registered_at"`
}

func recordName(view string, version int) string {
	return fmt.Sprintf("_registry/%s/v%d.json", view, version)
}

// Register records every view version in defs that is not yet registered,
// and checks the rest against their records. A view whose content changed
// without a new version is refused with ErrVersionNotBumped, naming the view
// and each change; every such view is reported.
func (r *Registry) Register(ctx context.Context, defs *Definitions) error {
	var errs []error
	taken := map[string]int{}
	for _, v := range defs.Views {
		if err := r.register(ctx, defs, v, taken); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Registry) register(ctx context.Context, defs *Definitions, v *View, taken map[string]int) error {
	name := recordName(v.Name, v.Version)
	want := RegistryRecord{View: v.Name, Version: v.Version, Definition: v.Canonical(defs), RegisteredAt: r.now().UTC()}
	want.Fingerprint = fingerprint(want.Definition)
	for {
		have, err := r.Lookup(ctx, v.Name, v.Version)
		if err == nil {
			return r.changed(ctx, defs, v, have, want, taken)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		data, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			return fmt.Errorf("encode registry record: %w", err)
		}
		err = r.store.CreateFile(ctx, name, append(data, '\n'))
		if !errors.Is(err, fs.ErrExist) { // else another process registered it first: compare with theirs
			if err != nil {
				return fmt.Errorf("register view %s: %w", v.Ref(), err)
			}
			return nil
		}
	}
}

// Check checks the given view versions of defs against their records, as
// Register does, but records nothing: a version not yet registered passes,
// so that a training set can be built, and its definition changed, before
// ingest computes the version (and registers it).
func (r *Registry) Check(ctx context.Context, defs *Definitions, views ...*View) error {
	var errs []error
	taken := map[string]int{}
	for _, v := range views {
		have, err := r.Lookup(ctx, v.Name, v.Version)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			def := v.Canonical(defs)
			errs = append(errs, r.changed(ctx, defs, v, have, RegistryRecord{Definition: def, Fingerprint: fingerprint(def)}, taken))
		}
	}
	return errors.Join(errs...)
}

// changed returns nil if the record want of view v has the fingerprint of
// the registered have, and else ErrVersionNotBumped with where v is
// defined, the changes and the version to define it as instead. taken
// holds, by view name, the versions already proposed to other changed
// versions of the view, so that each is told a number of its own.
func (r *Registry) changed(ctx context.Context, defs *Definitions, v *View, have *RegistryRecord, want RegistryRecord, taken map[string]int) error {
	if have.Fingerprint == want.Fingerprint {
		return nil
	}
	instead := r.unused(ctx, defs, v.Name, taken[v.Name])
	taken[v.Name] = instead + 1
	return fmt.Errorf("%s: %s.version: %w: view %s: %s; define it as version %d instead",
		v.pos.of("version"), v.path, ErrVersionNotBumped, v.Ref(), strings.Join(diffCanonical(have.Definition, want.Definition), "; "), instead)
}

// unused returns the first version of the view named name, from from and
// above those defs defines, that is not registered either (up to a hundred
// more are looked up): the version a changed definition can take.
func (r *Registry) unused(ctx context.Context, defs *Definitions, name string, from int) int {
	next := max(1, from)
	for _, v := range defs.Views {
		if v.Name == name {
			next = max(next, v.Version+1)
		}
	}
	for range 100 {
		if _, err := r.Lookup(ctx, name, next); err != nil {
			break
		}
		next++
	}
	return next
}

// Lookup returns the record of a view version; the error matches
// fs.ErrNotExist when it was never registered.
func (r *Registry) Lookup(ctx context.Context, view string, version int) (*RegistryRecord, error) {
	data, err := r.store.ReadFile(ctx, recordName(view, version))
	if err != nil {
		return nil, fmt.Errorf("read registry record: %w", err)
	}
	var rec RegistryRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("read registry record %s: %w", recordName(view, version), err)
	}
	if rec.Fingerprint != fingerprint(rec.Definition) {
		return nil, fmt.Errorf("read registry record %s: fingerprint does not match its definition", recordName(view, version))
	}
	return &rec, nil
}
