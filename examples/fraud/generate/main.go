package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/quiver-ml/quiver/examples/fraud/fraudgen"
	"github.com/quiver-ml/quiver/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	cli.Exit(err)
}

// progressEvery is how often a long run logs its progress.
const progressEvery = 10 * time.Second

// run parses args, then generates events into Kafka or, with --stdout, to
// stdout, until ctx is done or --count or --duration is reached.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated Kafka brokers")
	topic := fs.String("topic", "transactions", "topic to produce to")
	rate := fs.Float64("rate", 0, "events per second of wall-clock time, event time then being the time of production; 0: as fast as possible")
	eventRate := fs.Float64("event-rate", fraudgen.DefaultRate, "events per second of event time, with --rate 0")
	count := fs.Int64("count", 0, "stop after this many events; 0: no limit")
	duration := fs.Duration("duration", 0, "stop after this much wall-clock time; 0: no limit")
	users := fs.Int("users", fraudgen.DefaultUsers, "number of users (card holders)")
	merchants := fs.Int("merchants", fraudgen.DefaultMerchants, "number of merchants")
	seed := fs.Uint64("seed", 1, "random seed: the same seed and flags give the same events")
	start := fs.String("start", "", "RFC 3339 event time of the first event, with --rate 0 (default now)")
	driftAt := fs.String("drift-at", "", "event time from which some users drift: RFC 3339, or a duration after the first event (30m); empty: never (SIGUSR1 switches the drift on while it runs)")
	outOfOrder := fs.Duration("out-of-order", 0, "how far an event's time may fall behind earlier events, with --rate 0")
	toStdout := fs.Bool("stdout", false, "write JSON lines to stdout instead of producing to Kafka")
	labels := fs.String("labels", "", "also write each event's label (is_fraud) to this CSV file: a spine for backfill dataset")
	driftShare := fs.Float64("drift-share", fraudgen.DefaultDriftShare, "share of users who drift, between 0 and 1")
	driftFactor := fs.Float64("drift-factor", fraudgen.DefaultDriftFactor, "drifting users' amounts are multiplied by this")
	predict := fs.String("predict", "", "also post each event to this predict endpoint (http://HOST:PORT/v1/models/NAME/predict), as a payment service asking for a fraud score would")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	kafkaSecurity := cli.KafkaFlags(fs)
	fs.Usage = cli.Usage(fs, "generate produces the fraud demo's card transactions to Kafka, or to stdout.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log, err := cli.Logger(os.Stderr, *logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(log) // for the Kafka client's TLS warnings

	// Every problem with the flags at once.
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if !(*rate >= 0) || math.IsInf(*rate, 0) {
		bad("--rate %g: want 0 or more", *rate)
	}
	if *count < 0 {
		bad("--count %d: want 0 or more", *count)
	}
	if *duration < 0 {
		bad("--duration %s: want 0 or more", *duration)
	}
	cfg := fraudgen.Config{
		Users:       *users,
		Merchants:   *merchants,
		Seed:        *seed,
		Rate:        *eventRate,
		Start:       time.Now(),
		OutOfOrder:  *outOfOrder,
		DriftShare:  *driftShare,
		DriftFactor: *driftFactor,
	}
	switch {
	case *rate > 0 && *start != "":
		bad("--start %s: event time is wall-clock time with --rate > 0", *start)
	case *rate > 0:
		cfg.Rate = *rate
	case *start != "":
		if cfg.Start, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			bad("--start %q: want an RFC 3339 time", *start)
		}
	}
	if cfg.DriftAt, err = parseDriftAt(*driftAt, cfg.Start); err != nil {
		problems = append(problems, err)
	}
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	gen, err := fraudgen.New(cfg)
	if err != nil {
		return err
	}

	parent := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var out sink
	if *toStdout {
		out = newLineSink(stdout)
	} else {
		opts, err := kafkaSecurity()
		if err != nil {
			return err
		}
		out, err = newKafkaSink(ctx, strings.Split(*brokers, ","), *topic, opts...)
		if err != nil {
			return err
		}
	}
	if *labels != "" {
		if out, err = newLabelSink(out, *labels); err != nil {
			return err
		}
	}
	var scorer *predictSink
	if *predict != "" {
		scorer = newPredictSink(out, *predict)
		out = scorer
	}
	cfg = gen.Config()
	log.Info("generating",
		"to", out.String(), "rate", *rate, "event_rate", cfg.Rate, "count", *count, "duration", *duration,
		"users", cfg.Users, "merchants", cfg.Merchants, "seed", cfg.Seed,
		"start", cfg.Start.Format(time.RFC3339Nano), "drift_at", formatDriftAt(cfg.DriftAt))

	began := time.Now()
	// SIGUSR1 is the drift switch: drifting users drift from then on.
	driftNow := make(chan os.Signal, 1)
	signal.Notify(driftNow, syscall.SIGUSR1)
	defer signal.Stop(driftNow)
	p := pacer{rate: *rate, count: *count, log: log, drift: driftNow}
	generated, genErr := p.run(ctx, gen, out)
	delivered, closeErr := out.Close()
	reason := "count"
	switch {
	case genErr != nil:
		reason = "error"
	case parent.Err() != nil:
		reason = "signal"
	case ctx.Err() != nil:
		reason = "duration"
	}
	attrs := []any{"reason", reason, "events", delivered, "generated", generated, "elapsed", time.Since(began).Round(time.Millisecond)}
	if scorer != nil {
		attrs = append(attrs, scorer.stats()...)
	}
	log.Info("stopped", attrs...)
	return errors.Join(genErr, closeErr)
}

// parseDriftAt parses --drift-at: empty for never, an RFC 3339 time, or a
// duration after start.
func parseDriftAt(s string, start time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return start.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--drift-at %q: want an RFC 3339 time or a duration", s)
}

func formatDriftAt(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339Nano)
}

// pacer runs the generation loop.
type pacer struct {
	rate  float64 // events per second of wall-clock time; 0: unpaced
	count int64   // events to generate; 0: unbounded
	log   *slog.Logger
	drift <-chan os.Signal // turns the drift on
}

// run writes events from gen to out until the count is reached or ctx is
// done, and says how many it wrote.
func (p pacer) run(ctx context.Context, gen *fraudgen.Generator, out sink) (n int64, err error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	began := time.Now()
	lastLog := began
	var last time.Time // event time of the last event
	for ; (p.count == 0 || n < p.count) && ctx.Err() == nil; n++ {
		select {
		case <-p.drift:
			from := last
			if p.rate > 0 {
				from = time.Now()
			}
			gen.DriftFrom(from)
			p.log.Info("drift switched on", "from", from.Format(time.RFC3339Nano), "share", gen.Config().DriftShare, "factor", gen.Config().DriftFactor)
		default:
		}
		ev := gen.Next()
		if p.rate > 0 {
			due := began.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				if err := out.Flush(); err != nil {
					return n, err
				}
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return n, nil
				case <-timer.C:
				}
			}
			ev.Time = time.UnixMilli(time.Now().UnixMilli()).UTC()
		}
		if err := out.Write(ctx, ev); err != nil {
			return n, err
		}
		last = ev.Time
		if now := time.Now(); now.Sub(lastLog) >= progressEvery {
			lastLog = now
			p.log.Info("progress", "generated", n+1, "event_time", ev.Time.Format(time.RFC3339))
		}
	}
	return n, nil
}
