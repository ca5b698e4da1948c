package cli_test

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
	if err := cli.Parse(fs, nil, func(string) string { return "not-a-number" }); err == nil || !strings.Contains(err.Error(), `QUIVER_PORT="not-a-number"`) {
		t.Fatalf("a bad environment value: %v, want an error naming the variable", err)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool("inclusive", false, "")
	if err := cli.Parse(fs, nil, func(string) string { return "yes" }); err == nil || err.Error() != `QUIVER_INCLUSIVE="yes": want true or false` {
		t.Fatalf("a bad boolean in the environment: %v, want it to say what it takes", err)
	}
}

// TestParseErrors: a value a flag cannot take is refused saying what the
// flag wants, from the command line or the environment.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ flag, value, want string }{
		{"interval", "abc", "want a duration such as 250ms, 30s or 1h30m"},
		{"entries", "-5x", "want an integer"},
		{"big", "5x", "want an integer"},
		{"partitions", "-1", "want an integer of 0 or more"},
		{"ratio", "half", "want a number"},
		{"inclusive", "maybe", "want true or false"},
		{"entries", "99999999999999999999", "value out of range"},
	} {
		newFlags := func() *flag.FlagSet {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Duration("interval", time.Second, "")
			fs.Int("entries", 1, "")
			fs.Int64("big", 1, "")
			fs.Uint("partitions", 1, "")
			fs.Float64("ratio", 1, "")
			fs.Bool("inclusive", false, "")
			return fs
		}
		err := cli.Parse(newFlags(), []string{"--" + tc.flag + "=" + tc.value}, func(string) string { return "" })
		if err == nil || !strings.HasSuffix(err.Error(), " -"+tc.flag+": "+tc.want) {
			t.Errorf("--%s=%s: %v, want an error ending %q", tc.flag, tc.value, err, tc.want)
		}
		env := cli.EnvName(tc.flag)
		err = cli.Parse(newFlags(), nil, func(k string) string { return map[string]string{env: tc.value}[k] })
		if want := env + "=" + strconv.Quote(tc.value) + ": " + tc.want; err == nil || err.Error() != want {
			t.Errorf("%s=%s: %v, want %q", env, tc.value, err, want)
		}
	}
	// --inclusive alone is still true; the values are still Getters, and
	// the flag package can print their defaults.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	incl := fs.Bool("inclusive", false, "")
	fs.Duration("interval", time.Second, "")
	if err := cli.Parse(fs, []string{"--inclusive"}, func(string) string { return "" }); err != nil || !*incl {
		t.Errorf("--inclusive: %v, %t; want true", err, *incl)
	}
	if g, ok := fs.Lookup("interval").Value.(flag.Getter); !ok || g.Get() != time.Second {
		t.Errorf("--interval's value is not the Getter of 1s it was")
	}
	var defaults strings.Builder
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	if strings.Contains(defaults.String(), "panic") || !strings.Contains(defaults.String(), "(default 1s)") {
		t.Errorf("PrintDefaults:\n%s", defaults.String())
	}
}

// TestParseArguments: a word that is not a flag is an error, not the end of
// the flags (every flag after it would be dropped); ParseArgs returns the
// arguments of a command that takes them, after its flags.
func TestParseArguments(t *testing.T) {
	newFlags := func() (*flag.FlagSet, *bool, *string) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return fs, fs.Bool("inclusive", false, ""), fs.String("out", "", "")
	}
	noEnv := func(string) string { return "" }
	fs, _, _ := newFlags()
	err := cli.Parse(fs, []string{"--inclusive", "false", "--out", "x.parquet"}, noEnv)
	if err == nil || !strings.Contains(err.Error(), `unexpected argument "false"`) {
		t.Errorf("--inclusive false --out x.parquet: %v, want an error naming \"false\"", err)
	}
	fs, incl, out := newFlags()
	if err := cli.Parse(fs, []string{"--inclusive=false", "--out", "x.parquet"}, noEnv); err != nil || *incl || *out != "x.parquet" {
		t.Errorf("--inclusive=false --out x.parquet: %v, inclusive %v, out %q", err, *incl, *out)
	}
	fs, _, out = newFlags()
	args, err := cli.ParseArgs(fs, []string{"--out", "x.parquet", "a", "b"}, noEnv)
	if err != nil || !slices.Equal(args, []string{"a", "b"}) || *out != "x.parquet" {
		t.Errorf("ParseArgs: %q, %v, out %q; want [a b]", args, err, *out)
	}
	fs, _, _ = newFlags()
	if _, err := cli.ParseArgs(fs, []string{"a", "--out", "x.parquet"}, noEnv); err == nil || !strings.Contains(err.Error(), "flag --out after the arguments") {
		t.Errorf("ParseArgs with a flag after the arguments: %v", err)
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
	var buf bytes.Buffer
	log, _ := cli.Logger(&buf, "json")
	log.Info("done", "took", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"took":"1.5s"`) {
		t.Errorf("a duration in the JSON log: %s, want \"took\":\"1.5s\"", buf.String())
	}
}
