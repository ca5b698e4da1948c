package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/cli"
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
	// Not a regular file: refused rather than read for good (a device) or
	// waited on (a FIFO), which would stop every later reload.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero"} {
		if _, err := readTokens(p); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("readTokens(%s): %v, want not a regular file", p, err)
		}
	}
}

// TestWatchTokens: a tokens file replaced while serve runs, as the kubelet
// replaces a Secret's, gives its tokens; one that does not read leaves
// them, with one warning.
func TestWatchTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	write("first\n")
	stamps := cli.Stat(path)
	got := make(chan []string, 10)
	lines := make(lineChan, 100)
	log := slog.New(slog.NewTextHandler(lines, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchTokens(ctx, log, path, stamps, time.Millisecond, func(tokens []string) error { got <- tokens; return nil })
	}()
	next := func() []string {
		t.Helper()
		select {
		case tokens := <-got:
			return tokens
		case <-time.After(5 * time.Second):
			t.Fatal("no tokens given after the file changed")
			return nil
		}
	}
	write("second\nthird\n")
	if tokens := next(); !slices.Equal(tokens, []string{"second", "third"}) {
		t.Fatalf("tokens %q, want second and third", tokens)
	}
	write("# none left\n")
	lines.expect(t, "no tokens")
	write("fourth\n")
	if tokens := next(); !slices.Equal(tokens, []string{"fourth"}) {
		t.Fatalf("tokens %q after a file without tokens, want fourth", tokens)
	}
	// Moved away and back twice: each time away is a warning.
	move := func(from, to string) {
		t.Helper()
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		move(path, path+".away")
		lines.expect(t, "no such file")
		move(path+".away", path)
		time.Sleep(500 * time.Millisecond) // seen back as it was read, silently
	}
	cancel()
	<-done
	for len(lines) > 0 {
		t.Errorf("a further log line: %s", <-lines)
	}
}

// lineChan is a log's writer that passes on each line.
type lineChan chan string

func (c lineChan) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

// expect reads lines until one has text, failing after 5 s.
func (c lineChan) expect(t *testing.T, text string) {
	t.Helper()
	for {
		select {
		case line := <-c:
			if strings.Contains(line, text) {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no log line with %q", text)
		}
	}
}
