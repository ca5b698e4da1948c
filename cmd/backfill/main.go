// Command backfill makes the offline store useful: point-in-time-correct
// training sets (dataset), replays that bootstrap a new view version
// (replay), and compaction of the logs (compact).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/schollz/progressbar/v3"
	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/backfill"
	"github.com/quiver-ml/quiver/internal/cli"
	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/offline"
	"github.com/quiver-ml/quiver/store/online"
)

const usage = `backfill builds training sets from the offline event log.

Usage:
  backfill dataset --definitions PATH --spine FILE --timestamp-column COL (--feature-service S | --features REFS) --out FILE.parquet|FILE.csv [--inclusive] [--shard i/n] [--log-marks FILE]
  backfill merge --out FILE.parquet|FILE.csv SHARD.parquet...
  backfill replay --definitions PATH --view NAME@V [--from T] [--to T]
  backfill compact --definitions PATH [--target-size 128MiB] [--grace 0s]

Run "backfill SUBCOMMAND -h" for its flags.`

func main() { cli.Exit(run(os.Args[1:])) }

func run(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, usage)
		if len(args) == 0 {
			return errors.New("no subcommand")
		}
		return nil
	}
	switch args[0] {
	case "dataset":
		return dataset(args[1:])
	case "merge":
		return merge(args[1:])
	case "replay":
		return replayView(args[1:])
	case "compact":
		return compact(args[1:])
	}
	return fmt.Errorf("unknown subcommand %q (want dataset, merge, replay or compact)", args[0])
}

// refs collects --features, comma-separated and repeatable.
type refs []string

func (r *refs) String() string { return strings.Join(*r, ",") }
func (r *refs) Set(s string) error {
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*r = append(*r, f)
		}
	}
	return nil
}

func dataset(args []string) error {
	fs := flag.NewFlagSet("backfill dataset", flag.ContinueOnError)
	common := cli.AddCommon(fs)
	spine := fs.String("spine", "", "the spine: a .csv or .parquet file of join keys, a timestamp and any labels (required)")
	tsCol := fs.String("timestamp-column", "", "the spine's time column: a timestamp, RFC 3339 or epoch milliseconds (required)")
	service := fs.String("feature-service", "", "the features of this feature service, with its on-demand features")
	var refList refs
	fs.Var(&refList, "features", "feature references, comma-separated (view@1:feature,...); may repeat")
	out := fs.String("out", "", "the dataset to write, .parquet (or .csv, for tools without a Parquet reader; a shard's is Parquet); its profile goes beside it as <out>.profile.json, its directory is made if missing (required)")
	inclusive := fs.Bool("inclusive", false, "count events at the spine time (te <= t); by default only those before it (te < t)")
	mem := addMemoryFlags(fs)
	metricsAddr := addMetricsAddr(fs)
	shard := fs.String("shard", "", "build only shard i of n (i/n, from 0): the spine rows whose entity hashes to it, so each job computes the state of its entities only; backfill merge joins the shards")
	logMarks := fs.String("log-marks", "", "a file shared by the jobs of one run, such as the shards of a dataset, on a file system that makes hard links: the first to start records there where the event log ends, and each reads the log only up to it, so that all read the same events beside a running ingest; give each run its own file")
	fs.Usage = cli.Usage(fs, "backfill dataset writes a point-in-time-correct training set.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log, defs, off, err := common.Open()
	if err != nil {
		return err
	}
	limit, err := mem.limit(log)
	if err != nil {
		return err
	}
	var sh backfill.Shard
	if *shard != "" {
		if sh, err = backfill.ParseShard(*shard); err != nil {
			return fmt.Errorf("--shard %w", err)
		}
		if *logMarks == "" {
			log.Warn("--shard without --log-marks: shards started at different times beside a running ingest read different event logs, and their merge matches none; give every shard of the run one --log-marks file")
		}
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	prog, closeMetrics, err := startProgress(*metricsAddr, log, stop)
	if err != nil {
		return err
	}
	defer closeMetrics()
	sum, err := backfill.Dataset(ctx, backfill.DatasetConfig{
		Definitions: defs, Offline: off, Spine: *spine, TimestampColumn: *tsCol,
		Features: refList, Service: *service, Out: *out, Inclusive: *inclusive,
		MemoryLimit: limit, TempDir: *mem.tempDir, Shard: sh, LogMarks: *logMarks, Logger: log, Progress: prog,
	})
	prog.finish()
	if err != nil {
		return err
	}
	log.Info("dataset written", "out", *out, "rows", sum.Rows, "events", sum.Events, "buckets", sum.Buckets, "parts", sum.Parts,
		"took", sum.Elapsed.Round(time.Millisecond), "rows_per_s", int(float64(sum.Rows)/sum.Elapsed.Seconds()))
	return nil
}

func merge(args []string) error {
	fs := flag.NewFlagSet("backfill merge", flag.ContinueOnError)
	out := fs.String("out", "", "the dataset to write, .parquet (or .csv), with its profile beside it; its directory is made if missing (required)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	fs.Usage = cli.Usage(fs, "backfill merge joins the shards of a dataset (backfill dataset --shard i/n), given in any order, into the spine's order.")
	shards, err := cli.ParseArgs(fs, args, os.Getenv)
	if err != nil {
		return err
	}
	log, err := cli.Logger(os.Stderr, *logFormat)
	if err != nil {
		return err
	}
	if *out == "" || len(shards) == 0 {
		return errors.New("want --out FILE.parquet (or .csv) and the shards")
	}
	n, err := backfill.Merge(*out, shards)
	if err != nil {
		return err
	}
	log.Info("dataset merged", "out", *out, "shards", len(shards), "rows", n)
	return nil
}

func replayView(args []string) error {
	fs := flag.NewFlagSet("backfill replay", flag.ContinueOnError)
	common := cli.AddCommon(fs)
	viewRef := fs.String("view", "", "the view version to replay, NAME@V (required)")
	from := fs.String("from", "", "replay only events at or after this time (RFC 3339 or epoch ms) (lifetime features then count only those)")
	to := fs.String("to", "", "stop each source partition's replay at its first event at or after this time (RFC 3339 or epoch ms): ingest applies that event and every one after it, whatever their times")
	mem := addMemoryFlags(fs)
	metricsAddr := addMetricsAddr(fs)
	fs.Usage = cli.Usage(fs, `backfill replay computes a view version's state from the event log and publishes it
to its changelog (and Redis with --online redis), replacing what an earlier run published,
with a marker from which ingest, restarted with the version, catches up. Run it before ingest computes the version:
a version ingest has taken over is refused.`)
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	log, defs, off, err := common.Open()
	if err != nil {
		return err
	}
	name, ver, ok := strings.Cut(*viewRef, "@")
	n, err := strconv.Atoi(ver)
	if !ok || err != nil || defs.View(name, n) == nil || n < 1 {
		return fmt.Errorf("--view %q: want NAME@VERSION of a defined view version", *viewRef)
	}
	v := defs.View(name, n)
	limit, err := mem.limit(log)
	if err != nil {
		return err
	}
	cfg := replay.Config{Definitions: defs, View: v, Offline: off, MemoryLimit: limit, TempDir: *mem.tempDir}
	for flagName, s := range map[string]string{"--from": *from, "--to": *to} {
		if s == "" {
			continue
		}
		t, err := parseTime(s)
		if err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
		if flagName == "--from" {
			cfg.Since = t
		} else {
			cfg.Until = t
		}
	}
	if !cfg.Since.IsZero() && !cfg.Until.IsZero() && !cfg.Until.After(cfg.Since) {
		return fmt.Errorf("--to %s is not after --from %s: no event is in between", *to, *from)
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	prog, closeMetrics, err := startProgress(*metricsAddr, log, stop)
	if err != nil {
		return err
	}
	defer closeMetrics()
	// Before anything is written: in a mistyped store, the marker and the
	// changelog would hide the version from ingest's bootstrap.
	if err := replay.CheckLog(ctx, off, defs.Source(v.Source)); err != nil {
		return err
	}
	cl, err := kgo.NewClient(common.Kafka(kgo.ProducerBatchMaxBytes(online.MaxRecordBytes))...)
	if err != nil {
		return fmt.Errorf("connect to kafka: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := replay.CheckNotLive(ctx, adm, off, common.TopicPrefix, v); err != nil {
		return err
	}
	if err := features.NewRegistry(cfg.Offline).Register(ctx, defs); err != nil {
		return err
	}
	rdb, err := common.Redis(0)
	if err != nil {
		return err
	}
	if rdb != nil {
		defer rdb.Close()
	}
	if err := common.PingRedis(ctx, rdb); err != nil {
		return err
	}
	// Pending until the replay is published: a crash part way leaves a
	// marker from which ingest replays everything since --from.
	if err := replay.WriteMarker(ctx, off, v, replay.Marker{Since: cfg.Since}); err != nil {
		return err
	}
	if err := replay.EnsureChangelog(ctx, adm, common.TopicPrefix, defs, v); err != nil {
		return err
	}
	// The version's feature log is rewritten with the states.
	removed, err := off.RemoveLog(ctx, offline.FeatureLogDir(v))
	if err != nil {
		return err
	}
	cfg.Rows = "replay/" + ksuid.New().String()
	began := time.Now()
	log.Info("replaying", "view", v.Ref(), "from", *from, "to", *to, "feature_log_files_removed", removed)
	prog.Step("replaying "+v.Ref(), -1)
	cfg.Progress = prog.Add
	res, err := replay.Run(ctx, cfg, func(b *replay.Bucket) error {
		return replay.Replace(ctx, cl, common.Kafka(), common.TopicPrefix, defs, v, b, rdb)
	})
	if err != nil {
		return err
	}
	prog.finish()
	if err := replay.WriteMarker(ctx, cfg.Offline, v, replay.Marker{Covered: res.Covered}); err != nil {
		return err
	}
	log.Info("replay published", "view", v.Ref(), "events", res.Events, "applied", res.Applied, "rows", res.Rows, "entities", res.Entities,
		"buckets", res.Buckets, "covered", res.Covered, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// parseTime parses a time flag: epoch milliseconds, or RFC 3339.
func parseTime(s string) (time.Time, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err == nil {
		err = features.CheckTime(ms)
	} else if ms, err = features.ParseTime(s); err != nil {
		err = fmt.Errorf("want an RFC 3339 time or epoch milliseconds: %w", err)
	}
	return time.UnixMilli(ms).UTC(), err
}

func compact(args []string) error {
	fs := flag.NewFlagSet("backfill compact", flag.ContinueOnError)
	common := cli.AddCommon(fs)
	target := fs.String("target-size", "128MiB", "merge smaller files of a date into files of up to about this size")
	metricsAddr := addMetricsAddr(fs)
	grace := fs.Duration("grace", 0, "keep replaced files this long after their replacement appeared (0: remove them at once; until then a reader of the bare directory, such as DuckDB, sees their rows twice)")
	fs.Usage = cli.Usage(fs, "backfill compact merges the small Parquet files of every log of the definitions; safe beside ingest and readers.")
	if err := cli.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	size, err := parseBytes(*target)
	if err != nil {
		return fmt.Errorf("--target-size: %w", err)
	}
	if *grace < 0 {
		return fmt.Errorf("--grace %v: want a duration of 0 or more", *grace)
	}
	log, defs, off, err := common.Open()
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	prog, closeMetrics, err := startProgress(*metricsAddr, log, stop)
	if err != nil {
		return err
	}
	defer closeMetrics()
	// As dataset and replay do: definitions that changed a registered
	// version are a mistake to fix before anything reads by them.
	if err := features.NewRegistry(off).Check(ctx, defs, defs.Views...); err != nil {
		return err
	}
	var dirs []string
	for _, s := range defs.Sources {
		dirs = append(dirs, "events/"+s.Name)
	}
	for _, v := range defs.Views {
		dirs = append(dirs, fmt.Sprintf("features/%s/v%d", v.Name, v.Version))
	}
	began := time.Now()
	var total offline.CompactStats
	prog.Step("compacting logs", int64(len(dirs)))
	for _, dir := range dirs {
		st, err := off.Compact(ctx, dir, offline.CompactOptions{TargetBytes: size, Grace: *grace})
		if err != nil {
			return err
		}
		prog.Add(1)
		log.Info("compacted", "log", dir, "merged", st.Merged, "written", st.Written, "removed", st.Removed, "temps", st.Temps, "rows", st.Rows)
		total.Merged, total.Written, total.Removed, total.Temps, total.Rows = total.Merged+st.Merged, total.Written+st.Written, total.Removed+st.Removed, total.Temps+st.Temps, total.Rows+st.Rows
	}
	prog.finish()
	log.Info("compaction done", "logs", len(dirs), "merged", total.Merged, "written", total.Written, "removed", total.Removed,
		"temps", total.Temps, "rows", total.Rows, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// parseBytes reads a size: bytes, or with a unit (256MiB, 1GiB; 1GB is
// 10⁹ bytes).
func parseBytes(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("%q: want a positive size like 256MiB", s)
	}
	return int64(n), nil
}

// memoryFlags are --memory-limit and --temp-dir, of dataset and replay.
type memoryFlags struct{ memoryLimit, tempDir *string }

func addMemoryFlags(fs *flag.FlagSet) memoryFlags {
	return memoryFlags{
		memoryLimit: fs.String("memory-limit", "1GiB", "memory for events at once, spilled to --temp-dir in buckets that fit; for dataset, half of it, and half for spine rows and their features: a larger spine is built in parts, each reading the log"),
		tempDir:     fs.String("temp-dir", os.TempDir(), "directory for spilled buckets"),
	}
}

// smallMemory is where --memory-limit gets a warning: far less than a job
// needs to hold a bucket's events and a part's spine at once.
const smallMemory = 16 << 20

// limit checks both flags, so that a mistyped --temp-dir fails before the
// log is read, and returns the memory limit.
func (m memoryFlags) limit(log *slog.Logger) (int64, error) {
	n, err := parseBytes(*m.memoryLimit)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit: %w", err)
	}
	if fi, err := os.Stat(*m.tempDir); err != nil {
		return 0, fmt.Errorf("--temp-dir: %w", err)
	} else if !fi.IsDir() {
		return 0, fmt.Errorf("--temp-dir %s is not a directory", *m.tempDir)
	}
	if n < smallMemory {
		log.Warn("--memory-limit is below 16MiB: events spill to disk in many small buckets, and a dataset's spine is built in many parts, each reading the whole event log", "memory_limit", *m.memoryLimit)
	}
	return n, nil
}

// addMetricsAddr defines --metrics-addr on a subcommand's flags.
func addMetricsAddr(fs *flag.FlagSet) *string {
	return fs.String("metrics-addr", "", "serve Prometheus metrics at /metrics (each step's progress, the Go runtime's and the process's) and /healthz on this address while the job runs, for a scrape of a long job; empty: none")
}

// progress shows a bar on a terminal and logs each step otherwise, and
// counts each step's items for Prometheus.
type progress struct {
	log  *slog.Logger
	tty  bool
	bar  *progressbar.ProgressBar
	done *prometheus.CounterVec
	want *prometheus.GaugeVec
	step atomic.Pointer[prometheus.Counter]
}

// startProgress returns a run's progress, served with the process's
// metrics at addr unless it is empty, until stop. Should serving fail, it
// calls failed.
func startProgress(addr string, log *slog.Logger, failed func()) (p *progress, stop func(), err error) {
	reg := cli.Registry()
	p = &progress{
		log: log, tty: term.IsTerminal(int(os.Stderr.Fd())),
		done: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "quiver_backfill_step_items_total", Help: "Items a step of the run has done: events read, spine rows computed (once for each entity the features are of: a row of a user and a merchant counts twice), logs compacted, events replayed.",
		}, []string{"step"}),
		want: promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
			Name: "quiver_backfill_step_target_items", Help: "Items a step of the run will do, where known before it ends.",
		}, []string{"step"}),
	}
	if addr == "" {
		return p, func() {}, nil
	}
	stop, err = cli.ServeMetrics(addr, reg, nil, log, failed)
	return p, stop, err
}

func (p *progress) Step(name string, n int64) {
	c := p.done.WithLabelValues(name)
	p.step.Store(&c)
	if n >= 0 {
		p.want.WithLabelValues(name).Set(float64(n))
	}
	p.finish()
	if !p.tty {
		p.log.Info(name, "total", n)
		return
	}
	p.bar = progressbar.NewOptions64(n, progressbar.OptionSetDescription(name), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowIts())
}

// finish ends the bar on a terminal with a line break, for the log lines
// after it.
func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(os.Stderr)
		p.bar = nil
	}
}

func (p *progress) Add(n int64) {
	if c := p.step.Load(); c != nil {
		(*c).Add(float64(n))
	}
	if p.bar != nil {
		p.bar.Add64(n)
	}
}
