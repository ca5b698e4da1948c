package features

import (
	"errors"
	"fmt"
)

// ErrCorruptEvent is returned when an encoded event cannot be decoded.
var ErrCorruptEvent = errors.New("features: corrupt event")

const eventVersion = 1

// AppendEvent appends a compact binary encoding of an event of this source
// to b: what ingest passes between its stages instead of re-parsing JSON.
// Fields are encoded by name, so an event encoded under one version of the
// definitions decodes under another: fields it lacks are null, fields the
// schema lost are ignored.
func (s *Source) AppendEvent(b []byte, ev *Event) []byte {
	b = append(b, eventVersion)
	b = appendVarint(b, ev.Time)
	n := 0
	for _, v := range ev.Fields {
		if !v.IsNull() {
			n++
		}
	}
	b = appendUvarint(b, uint64(n))
	for i, v := range ev.Fields {
		if v.IsNull() {
			continue
		}
		name := s.Schema[i].Name
		b = appendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = appendValue(b, v)
	}
	return b
}

// DecodeEvent decodes an event written by AppendEvent into ev, by this
// source's schema. A field whose type differs from the schema's is an error
// matching ErrCorruptEvent, like any malformed input.
func (s *Source) DecodeEvent(b []byte, ev *Event) error {
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != eventVersion {
		return fmt.Errorf("%w: unknown version %d", ErrCorruptEvent, v)
	}
	ev.Time = r.varint()
	ev.Fields = append(ev.Fields[:0], make([]Value, len(s.Schema))...)
	n := r.count(uint64(len(r.b)))
	for range n {
		name := r.bytes(r.count(uint64(len(r.b))))
		v := r.value()
		if r.err != nil {
			break
		}
		i := s.Field(string(name))
		if i < 0 {
			continue
		}
		if v.typ != s.Schema[i].Type {
			return fmt.Errorf("%w: field %s is %s, declared %s", ErrCorruptEvent, name, v.typ, s.Schema[i].Type)
		}
		ev.Fields[i] = v
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptEvent, r.err)
	}
	return nil
}
