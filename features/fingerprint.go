package features

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Canonical returns the view's semantic content as flat key/value pairs:
// entity and join keys, source and the types of the fields the view reads,
// the filter re-printed from its syntax tree, and each feature's aggregation,
// field, window and resolved granularity. Formatting, key order, the order of
// features and spellings of equal durations (60m, 1h) do not change it; any
// change to what the view computes does. TTL is not part of it: it decides
// how long state is served, not what it holds.
func (v *View) Canonical(d *Definitions) map[string]string {
	c := map[string]string{"entity": v.Entity, "source": v.Source}
	src := d.Source(v.Source)
	var used []string
	if e := d.Entity(v.Entity); e != nil {
		c["entity.join_keys"] = strings.Join(e.JoinKeys, ",")
		used = append(used, e.JoinKeys...)
	}
	if v.Filter != "" {
		c["filter"] = v.Filter
		if v.filter != nil {
			c["filter"] = v.filter.canonical
			used = append(used, v.filter.fields...)
		}
	}
	for _, f := range v.Features {
		p := "feature." + f.Name + "."
		c[p+"agg"] = string(f.Agg)
		if f.Field != "" {
			c[p+"field"] = f.Field
			used = append(used, f.Field)
		}
		c[p+"window"] = "lifetime"
		if f.Window > 0 {
			c[p+"window"] = FormatDuration(f.Window)
			c[p+"granularity"] = FormatDuration(f.Granularity)
		}
	}
	if src != nil {
		c["source.topic"] = src.Topic
		c["source.format"] = src.Format
		c["source.event_time"] = src.EventTime
		c["source.allowed_lateness"] = FormatDuration(src.AllowedLateness)
		used = append(used, src.EventTime)
		for _, name := range used {
			if i := src.Field(name); i >= 0 {
				c["source.schema."+name] = src.Schema[i].Type.String()
			}
		}
	}
	return c
}

// Fingerprint returns the SHA-256 of the view's canonical content, in hex.
func (v *View) Fingerprint(d *Definitions) string { return fingerprint(v.Canonical(d)) }

func fingerprint(c map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(h, "%s=%s\n", k, c[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// diffCanonical describes how canonical content b differs from a, one change
// per key, in key order.
func diffCanonical(a, b map[string]string) []string {
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		va, inA := a[k]
		vb, inB := b[k]
		// A field of the schema is in the content while the view reads it.
		added, removed := "added", "removed"
		if strings.HasPrefix(k, "source.schema.") {
			added, removed = "now read", "no longer read"
		}
		switch {
		case !inA:
			out = append(out, fmt.Sprintf("%s %s (%s)", k, added, vb))
		case !inB:
			out = append(out, fmt.Sprintf("%s %s (was %s)", k, removed, va))
		case va != vb:
			out = append(out, fmt.Sprintf("%s: %s → %s", k, va, vb))
		}
	}
	return out
}
