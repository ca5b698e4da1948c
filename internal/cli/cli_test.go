package cli_test

import (
	"flag"
	"io"
	"testing"

	"github.com/quiver-ml/quiver/internal/cli"
)

func TestParseEnvironment(t *testing.T) {
	env := map[string]string{"QUIVER_TOPIC_PREFIX": "env", "QUIVER_PORT": "7", "QUIVER_BROKERS": "from-env"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	prefix := fs.String("topic-prefix", "quiver", "")
	port := fs.Int("port", 1, "")
	brokers := fs.String("brokers", "default", "")
	other := fs.String("other", "default", "")
	if err := cli.Parse(fs, []string{"--brokers", "from-flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *prefix != "env" || *port != 7 || *brokers != "from-flag" || *other != "default" {
		t.Fatalf("got prefix %q port %d brokers %q other %q; want env, 7, from-flag, default", *prefix, *port, *brokers, *other)
	}

	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("port", 1, "")
	if err := cli.Parse(fs, nil, func(string) string { return "not-a-number" }); err == nil {
		t.Fatal("a bad environment value should be an error naming the variable")
	}
}

func TestLogger(t *testing.T) {
	for _, f := range []string{"text", "json"} {
		if _, err := cli.Logger(io.Discard, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := cli.Logger(io.Discard, "xml"); err == nil {
		t.Error("xml: want an error")
	}
}
