package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// bin holds the binaries under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quiver-e2e-")
	if err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/ingest", "./cmd/localkafka", "./cmd/serve", "./cmd/backfill", "./examples/fraud/generate")
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const definitions = "../../examples/fraud/definitions.yaml"

// proc is a binary running under test; its output goes to a log file that
// is printed if the test fails.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { p.done <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			tail(t, p.log)
		}
	})
	return p
}

func tail(t *testing.T, path string) {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	t.Logf("last lines of %s:\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

// stop sends sig and waits for the process to exit, returning its status.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s of %v", filepath.Base(p.cmd.Path), sig)
		return nil
	}
}

// startBroker runs the local broker on a free port.
func startBroker(t *testing.T) []string {
	t.Helper()
	brokers, _ := startBrokerAt(t, freeport.Get(t))
	return brokers
}

// startBrokerAt runs the local broker on port, with extra arguments.
func startBrokerAt(t *testing.T, port int, extra ...string) ([]string, *proc) {
	t.Helper()
	p := start(t, "localkafka", append([]string{"--port", strconv.Itoa(port), "--partitions", "4", "--topics", "transactions", "--data-dir", t.TempDir()}, extra...)...)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return []string{addr}, p
		}
	}
	t.Fatal("broker did not start")
	return nil, nil
}

func startIngest(t *testing.T, brokers []string, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--definitions", definitions, "--brokers", strings.Join(brokers, ","), "--data-dir", dataDir,
		"--metrics-addr", "127.0.0.1:" + strconv.Itoa(freeport.Get(t)), "--log-format", "json"}, extra...)
	return start(t, "ingest", args...)
}

func loadDefs(t *testing.T) *features.Definitions {
	t.Helper()
	defs, err := features.Load(definitions)
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

// kcatProduce writes the stream with kcat, keyed like Kafka's Java client
// does (murmur2), one key<TAB>value line per record.
func kcatProduce(t *testing.T, brokers []string, txns []ingesttest.Txn) {
	t.Helper()
	var lines strings.Builder
	for _, x := range txns {
		fmt.Fprintf(&lines, "%s\t%s\n", x.Key, x.Value)
	}
	cmd := exec.Command("kcat", "-b", strings.Join(brokers, ","), "-P", "-t", "transactions", "-K\t", "-X", "partitioner=murmur2_random")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// TestKcatToIngest produces events with kcat into the local broker and runs
// the real ingest binary: bad records land in the DLQ with their reasons,
// the changelog holds what the engine computes, and the offline logs hold
// every accepted event once.
func TestKcatToIngest(t *testing.T) {
	brokers := startBroker(t)
	txns := ingesttest.Stream(3, 3000)
	kcatProduce(t, brokers, txns)
	dataDir := t.TempDir()
	port := freeport.Get(t)
	in := startIngest(t, brokers, dataDir, "--metrics-addr", "127.0.0.1:"+strconv.Itoa(port))
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	bad := 0
	for _, x := range txns {
		if !x.Valid {
			bad++
		}
	}
	if dlq := metric(t, port, "quiver_ingest_dlq_records_total"); dlq != float64(bad) {
		t.Errorf("quiver_ingest_dlq_records_total = %v, want %d", dlq, bad)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200 from a consuming ingest", path, resp.Status)
		}
	}
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest exited with %v after SIGTERM, want status 0", err)
	}
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, loadDefs(t), txns, filepath.Join(dataDir, "offline"))
	valid := int64(0)
	for _, x := range txns {
		if x.Valid {
			valid++
		}
	}
	checkOfflineWithArrow(t, filepath.Join(dataDir, "offline"), valid)
}

// TestKcatToIngestRedis is TestKcatToIngest with --online redis, against a
// real redis-server.
func TestKcatToIngestRedis(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	brokers := startBroker(t)
	txns := ingesttest.Stream(7, 3000)
	kcatProduce(t, brokers, txns)
	dataDir := t.TempDir()
	in := startIngest(t, brokers, dataDir, "--online", "redis", "--redis-addr", addr)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 60*time.Second)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest exited with %v after SIGTERM, want status 0", err)
	}
	ingesttest.CheckDLQ(t, brokers, txns)
	ingesttest.Check(t, brokers, loadDefs(t), txns, filepath.Join(dataDir, "offline"))
	ingesttest.CheckRedis(t, brokers, addr)
}

// TestCrashRecovery kills ingest with SIGKILL at random moments, three
// times, while it works through 200,000 events in batches of 5,000 (many
// batch boundaries to crash across), and restarts it each time:
// what it finally wrote equals, byte for byte, what a clean run wrote from
// the same records.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test runs 200,000 events twice; skipped with -short")
	}
	txns := ingesttest.Stream(4, 200_000)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	clean := func() ingesttest.Snapshot {
		brokers := startBroker(t)
		ingesttest.Produce(t, brokers, "transactions", txns)
		dataDir := t.TempDir()
		in := startIngest(t, brokers, dataDir)
		ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 5*time.Minute)
		if err := in.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("clean run: ingest exited with %v", err)
		}
		return ingesttest.Take(t, brokers, filepath.Join(dataDir, "offline"))
	}()

	brokers := startBroker(t)
	ingesttest.Produce(t, brokers, "transactions", txns)
	dataDir := t.TempDir()
	adm := admin(t, brokers)
	kills := 0
	// Kill at random points of progress, whatever the machine's speed: once
	// the group has committed a random share of the source in each third.
	for _, at := range []float64{0.10 + 0.15*rng.Float64(), 0.35 + 0.2*rng.Float64(), 0.65 + 0.2*rng.Float64()} {
		in := startIngest(t, brokers, dataDir, "--instance-id", "ingest-0", "--max-batch", "5000")
		for deadline := time.Now().Add(2 * time.Minute); progress(t, adm) < at; time.Sleep(5 * time.Millisecond) {
			select {
			case err := <-in.done:
				t.Fatalf("ingest exited on its own (%v) before kill %d", err, kills+1)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no progress to %.0f%% within 2 minutes", 100*at)
			}
		}
		in.cmd.Process.Kill() // SIGKILL: no flush, no commit, no leaving the group
		<-in.done
		in.done <- nil
		kills++
		t.Logf("kill %d at %.0f%% of the source committed", kills, 100*at)
	}
	in := startIngest(t, brokers, dataDir, "--instance-id", "ingest-0", "--max-batch", "5000")
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 5*time.Minute)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest exited with %v", err)
	}
	crashed := ingesttest.Take(t, brokers, filepath.Join(dataDir, "offline"))
	if diff := clean.Diff(crashed); diff != "" {
		t.Fatalf("after %d kills, the result differs from a clean run: %s", kills, diff)
	}
	ingesttest.Check(t, brokers, loadDefs(t), txns, filepath.Join(dataDir, "offline"))
}

// progress is the share of the source the group has committed.
func progress(t *testing.T, adm *kadm.Client) float64 {
	t.Helper()
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, "quiver-ingest")
	if err != nil {
		return 0 // the group does not exist before its first commit
	}
	var done, total int64
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok {
			done += c.At
		}
	})
	return float64(done) / float64(max(total, 1))
}

func admin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestGracefulShutdown stops ingest with SIGTERM: it exits 0 with everything
// it consumed committed, and a restart has nothing to reprocess.
func TestGracefulShutdown(t *testing.T) {
	brokers := startBroker(t)
	ingesttest.Produce(t, brokers, "transactions", ingesttest.Stream(5, 20_000))
	dataDir := t.TempDir()
	in := startIngest(t, brokers, dataDir)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", 2*time.Minute)
	if err := in.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ingest exited with %v after SIGTERM, want status 0", err)
	}
	if done, err := ingesttest.CaughtUp(context.Background(), admin(t, brokers), "quiver-ingest", ingesttest.Topics...); !done || err != nil {
		t.Fatalf("after SIGTERM, committed offsets lag the topics (%v)", err)
	}

	port := freeport.Get(t)
	again := start(t, "ingest", "--definitions", definitions, "--brokers", strings.Join(brokers, ","), "--data-dir", dataDir,
		"--metrics-addr", "127.0.0.1:"+strconv.Itoa(port))
	time.Sleep(2 * time.Second) // time to join the group and fetch anything left
	consumed := metric(t, port, "quiver_ingest_records_consumed_total")
	if err := again.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("restarted ingest exited with %v", err)
	}
	if consumed != 0 {
		t.Fatalf("the restarted ingest consumed %v records; want 0 after a graceful stop", consumed)
	}
}

// TestStopBrokerFrozen: ingest, with its drift detectors, and serve, with
// a prediction to log, stopped while their broker takes connections but
// answers nothing (frozen, or cut off) exit within the grace periods the
// chart gives them: ingest --shutdown-timeout and 15 s, serve --drain-delay
// and 15 s.
func TestStopBrokerFrozen(t *testing.T) {
	brokers, broker := startBrokerAt(t, freeport.Get(t))
	txns := recentStream(500)
	kcatProduce(t, brokers, txns)
	const models = "../../model/testdata/models"
	in := startIngest(t, brokers, t.TempDir(), "--models", models, "--shutdown-timeout", "5s")
	base, serve := startServe(t, brokers, t.TempDir(), "--models", models)
	ingesttest.WaitCaughtUp(t, brokers, "quiver-ingest", time.Minute)
	waitReady(t, base)
	var out map[string]any
	postJSON(t, base+"/v1/models/fraud/predict", map[string]any{"entities": map[string]any{"user_id": []string{"u001"}, "merchant_id": []string{"m01"}},
		"request_context": map[string]any{"amount": []float64{12.5}}}, http.StatusOK, &out)
	broker.cmd.Process.Signal(syscall.SIGSTOP)
	for _, c := range []struct {
		name  string
		p     *proc
		grace time.Duration
	}{{"ingest", in, 20 * time.Second}, {"serve", serve, 15 * time.Second}} {
		start := time.Now()
		err := c.p.stop(t, syscall.SIGTERM)
		t.Logf("%s exited after %s: %v", c.name, time.Since(start).Round(time.Millisecond), err)
		if d := time.Since(start); d > c.grace {
			t.Errorf("%s took %s to exit with its broker frozen, more than its grace period, %s", c.name, d.Round(time.Millisecond), c.grace)
		}
	}
}

// metric sums a metric's samples from a /metrics endpoint.
func metric(t *testing.T, port int, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}
