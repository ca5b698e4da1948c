// Package cli holds what every Quiver binary does the same way: flags with
// matching environment variables, and structured logging.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// EnvName is the environment variable matching a flag: --topic-prefix is
// QUIVER_TOPIC_PREFIX.
func EnvName(flagName string) string {
	return "QUIVER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets each flag not given on the command
// line from its environment variable, if that is set. Command-line flags win
// over the environment, and the environment over defaults. An argument
// that is not a flag is an error: the flag package stops at the first, and
// every flag after it would be dropped (`--inclusive false` would set
// --inclusive and ignore the rest).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: a flag takes its value as --flag=value or --flag value, a boolean as --flag=false", fs.Arg(0))
	}
	return setFromEnv(fs, getenv)
}

// ParseArgs is Parse for a command that takes arguments after its flags,
// which it returns; one that looks like a flag is an error.
func ParseArgs(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	if err := parse(fs, args, getenv); err != nil {
		return nil, err
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("flag %s after the arguments: flags come first", a)
		}
	}
	return fs.Args(), setFromEnv(fs, getenv)
}

// parse parses args into fs. If they or the environment ask for
// --log-format json, a JSON logger is made the default first, so that a
// flag's error is logged as JSON (Exit) like everything after it, and
// the flag package prints nothing of its own unless help is asked for.
func parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	explain(fs)
	if fs.Lookup("log-format") == nil {
		return fs.Parse(args)
	}
	format := getenv(EnvName("log-format"))
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-") || name != "log-format":
		case ok:
			format = value
		case i+1 < len(args):
			format = args[i+1]
		}
	}
	if format == "json" {
		log, _ := Logger(os.Stderr, format)
		slog.SetDefault(log)
		if !slices.ContainsFunc(args, isHelp) {
			fs.SetOutput(io.Discard) // the flag package's own copy of an error, and the usage
		}
	}
	return fs.Parse(args)
}

// explain makes each of fs's values of the flag package's own types say
// what it wants when it cannot parse a value, where the package says
// "parse error".
func explain(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		switch f.Value.(type) {
		case explained, explainedBool:
			return
		}
		if !ok {
			return
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = explainedBool{explained{g, "true or false"}}
			return
		}
		switch g.Get().(type) {
		case time.Duration:
			f.Value = explained{g, "a duration such as 250ms, 30s or 1h30m"}
		case int, int64:
			f.Value = explained{g, "an integer"}
		case uint, uint64:
			f.Value = explained{g, "an integer of 0 or more"}
		case float64:
			f.Value = explained{g, "a number"}
		}
	})
}

// explained is a flag's value whose parse error says what it wants.
type explained struct {
	flag.Getter
	want string
}

func (e explained) Set(s string) error {
	err := e.Getter.Set(s)
	if err != nil && err.Error() == "parse error" { // the flag package's, unexported
		return fmt.Errorf("want %s", e.want)
	}
	return err
}

// String is the value's, "" for the zero explained, as the flag package
// asks of a value.
func (e explained) String() string {
	if e.Getter == nil {
		return ""
	}
	return e.Getter.String()
}

// explainedBool is an explained boolean, which --flag alone sets.
type explainedBool struct{ explained }

func (explainedBool) IsBoolFlag() bool { return true }

func isHelp(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// setFromEnv sets each flag not given on the command line from its
// environment variable, if that is set.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

// Logger returns a logger writing to w in the given format: text or json.
// A duration is written as text in both ("1.5s", not nanoseconds in JSON).
func Logger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: durationText})), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// redisLog routes go-redis's own messages (a connection pool that cannot
// dial, say), which it prints with the standard library's logger, to a
// slog logger, so that they are in --log-format too. go-redis says a
// failure again each time it retries, several times a second while Redis
// is down: a message of one format is logged at most every 10 seconds.
type redisLog struct {
	log   *slog.Logger
	mu    sync.Mutex
	every map[string]*rate.Sometimes // by format
}

func newRedisLog(log *slog.Logger) *redisLog {
	return &redisLog{log: log, every: map[string]*rate.Sometimes{}}
}

func (l *redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.mu.Lock()
	s := l.every[format]
	if s == nil {
		s = &rate.Sometimes{First: 1, Interval: 10 * time.Second}
		l.every[format] = s
	}
	l.mu.Unlock()
	level := slog.LevelWarn
	if strings.HasPrefix(format, "sentinel: selected") || strings.HasPrefix(format, "sentinel: new master") || strings.HasPrefix(format, "sentinel: discovered") {
		level = slog.LevelInfo // how a client behind Sentinels finds its master, at start and after a failover
	}
	s.Do(func() {
		l.log.Log(ctx, level, strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "), "library", "go-redis")
	})
}

// Usage prints a usage line and the flags, each with its environment
// variable, as the flag set's usage function.
func Usage(fs *flag.FlagSet, summary string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags (each also read from its environment variable):\n", summary)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (%s)\n    \t%s", f.Name, EnvName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(out, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
}

// Exit ends the program: status 0 for no error or a request for help (the
// usage is already printed), else the error and status 1; or, for a job
// that a signal caught by SignalContext stopped part way (its error is its
// context's), that it was stopped, and 128 plus the signal's number. The error is
// logged as one JSON record once the binary logs JSON (Common.Open makes
// its logger the default), so that log pipelines keep the reason a process
// stopped; before that, and for text, it is printed as is.
func Exit(err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	// A job a signal stopped part way fails with its context's error,
	// which does not say so; it exits as shells report a signal's.
	code := 1
	if s, ok := signalled.Load().(syscall.Signal); ok && errors.Is(err, context.Canceled) {
		err, code = fmt.Errorf("stopped by %s before it finished", s), 128+int(s)
	}
	if _, ok := slog.Default().Handler().(*slog.JSONHandler); ok {
		slog.Error("stopped", "err", err.Error())
	} else {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	os.Exit(code)
}

// signalled is the signal SignalContext caught, if any.
var signalled atomic.Value

// SignalContext returns a context that ends at the first SIGINT or SIGTERM,
// for a clean stop, logged: a job's error after it (a context canceled)
// is the stop's. A second signal ends the process at once, as if it were
// not handled, rather than waiting for the clean stop.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sig:
			signalled.Store(s)
			slog.Info("stopping on a signal", "signal", s.String())
		case <-ctx.Done():
		}
		signal.Stop(sig) // before ctx ends, so that no later signal is caught
		cancel()
	}()
	return ctx, cancel
}

// Stopped returns err, or nil if a signal ended ctx (SignalContext) and err
// is only that: a service asked to stop while it was starting stops
// cleanly.
func Stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
