package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFlagErrors: flag values that would silently mean something else are
// refused before serve opens anything.
func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--state-cache-entries", "-1"}, "none may be negative"},
		{[]string{"--redis-client-cache-mb", "-1"}, "none may be negative"},
		{[]string{"--drain-delay", "-1s"}, "none may be negative"},
		{[]string{"--prediction-log", "false", "--listen", ":0"}, `unexpected argument "false"`},
		{[]string{"--topic-prefix="}, "--topic-prefix is empty"},
	} {
		args := append([]string{"--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", t.TempDir()}, c.args...)
		if err := run(args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// TestReadTokens: a tokens file an editor saved with a byte order mark
// still gives its first token as written.
func TestReadTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("\ufefffirst\r\n# a comment\n\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "second"}; !slices.Equal(got, want) {
		t.Errorf("tokens %q, want %q", got, want)
	}
}
