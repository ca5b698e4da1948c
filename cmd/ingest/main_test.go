package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagErrors: flag values that would silently mean something else are
// refused before ingest connects anywhere.
func TestFlagErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.secret")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drift := []string{"--models", "../../examples/fraud/models"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-batch", "0"}, "--max-batch 0: must be positive"},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout 0s: must be positive"},
		{[]string{"--session-timeout", "0s"}, "--session-timeout 0s: must be positive"},
		{[]string{"--flush-interval", "0s"}, "--flush-interval 0s: want 10ms to 1m"},
		{[]string{"--flush-interval", "1ms"}, "--flush-interval 1ms: want 10ms to 1m"},
		{[]string{"--max-future-skew", "-1h"}, "--max-future-skew -1h0m0s: must not be negative"},
		{[]string{"--group-id="}, "--group-id is empty"},
		{[]string{"--write-retry", "0s"}, "--write-retry 0s: must be positive"},
		{[]string{"--metrics-addr="}, "--metrics-addr is empty"},
		{[]string{"--drift-group-id", "drift-b"}, "--drift-group-id needs --models"},
		{[]string{"--retrain-webhook-secret-file", empty}, "--retrain-webhook-secret-file needs --models"},
		{append([]string{"--retrain-webhook-secret-file", empty}, drift...), "--retrain-webhook-secret-file needs --retrain-webhook"},
		{append([]string{"--retrain-webhook", "hooks.example.com/retrain"}, drift...), `--retrain-webhook: want an http:// or https:// URL`},
		{append([]string{"--retrain-webhook", "http://hooks:8080/retrain", "--retrain-webhook-secret-file", empty}, drift...), "is empty: bodies would go unsigned"},
		{append([]string{"--retrain-webhook", "http://hooks:8080/retrain", "--retrain-webhook-secret-file", "/dev/zero"}, drift...), "/dev/zero: not a regular file"},
		// Not quoted back: the URL may hold a secret.
		{append([]string{"--retrain-webhook", "http://u:pw@hooks:8080/SECRET%zz?token=tok"}, drift...), "--retrain-webhook: want an http:// or https:// URL"},
		{append([]string{"--drift-group-id", "quiver-ingest"}, drift...), `--drift-group-id "quiver-ingest" is also --group-id`},
		{[]string{"--models", "no-such-dir"}, "--models: stat no-such-dir: no such file or directory"},
		{[]string{"--models", "main.go"}, "--models main.go: not a directory"},
		{[]string{"--topic-prefix="}, "--topic-prefix is empty"},
		{[]string{"--brokers="}, `--brokers "": an empty address`},
		{[]string{"--brokers", "a:9092,,b:9092"}, "an empty address"},
		{[]string{"--data-dir", "data", "extra.yaml"}, `unexpected argument "extra.yaml"`},
	} {
		args := append([]string{"--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", t.TempDir()}, c.args...)
		if err := run(args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
