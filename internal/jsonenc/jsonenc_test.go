package jsonenc_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/quiver-ml/quiver/internal/jsonenc"
)

// FuzzAppendString: the output is valid JSON, which decodes to s when s is
// valid UTF-8.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "\x00\x1f\x7f", "ünï", "\xff\xfe", "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := jsonenc.AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q gives invalid JSON %s: %v", s, out, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("%q decodes to %q", s, got)
		}
	})
}
