package e2e_test

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/drift"
	"github.com/quiver-ml/quiver/drift/drifttest"
	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/internal/ingesttest"
)

// TestDriftRestart: ingest's drift detectors are killed (SIGKILL) and
// restarted around a breach, twice: in the middle of it, and as soon as its
// event is out. The event is sent exactly once, and kcat reads it.
func TestDriftRestart(t *testing.T) {
	brokers := startBroker(t)
	models, _, prof := drifttest.Repository(t, "  window: 200\n  min_samples: 150\n  consecutive: 3\n  cooldown: 1h\n")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, -1, nil, "quiver.predictions"); err != nil {
		t.Fatal(err) // as serve does
	}
	s := drifttest.NewSampler(prof, 11)
	at := time.Now().Add(-time.Hour).UTC()
	produced := 0
	windows := func(k int, shifted bool) {
		s.Shift("user_txn__amount_sum_1h", shifted)
		drifttest.Produce(t, cl, "quiver.predictions", s.Predictions(k*200, &at, 5*time.Millisecond))
		produced += k * 200
	}
	dataDir := t.TempDir()
	ingest := func() (*proc, int) {
		port := freeport.Get(t)
		return startIngest(t, brokers, dataDir, "--models", models, "--instance-id", "ingest-0", "--metrics-addr", "127.0.0.1:"+strconv.Itoa(port)), port
	}
	// predictions waits until an ingest has counted n predictions.
	predictions := func(port int, n float64) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got := metricOrZero(port, "quiver_drift_predictions_total"); got >= n {
				return
			}
		}
		t.Fatalf("ingest counted %v predictions, want %v", metricOrZero(port, "quiver_drift_predictions_total"), n)
	}

	p, port := ingest()
	windows(20, false)
	windows(2, true) // two breaching windows of three
	predictions(port, float64(produced))
	if e := metric(t, port, "quiver_drift_events_total"); e != 0 {
		t.Fatalf("%v events before the breach is sustained", e)
	}
	p.stop(t, syscall.SIGKILL)

	p, port = ingest()
	windows(4, true) // sustained from here, whatever the replay rebuilt
	for deadline := time.Now().Add(60 * time.Second); metricOrZero(port, "quiver_drift_events_total") == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no retraining event within 60s of a sustained breach")
		}
	}
	p.stop(t, syscall.SIGKILL) // before it commits, most likely

	p, port = ingest()
	windows(3, true) // still drifting, inside the cooldown
	windows(2, false)
	adm := admin(t, brokers)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ok, _ := ingesttest.CaughtUp(context.Background(), adm, "quiver-drift", "quiver.predictions"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drift detectors did not commit the whole prediction log within 60s")
		}
	}
	if e := metric(t, port, "quiver_drift_events_total"); e != 0 {
		t.Errorf("the restarted ingest sent %v events inside the cooldown", e)
	}
	p.stop(t, syscall.SIGTERM)

	out, err := exec.Command("kcat", "-C", "-b", brokers[0], "-t", "quiver.retrain", "-o", "beginning", "-e", "-q").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d retraining events, want exactly 1:\n%s", len(lines), out)
	}
	id, r, err := drift.DecodeRetrain([]byte(lines[0]))
	if err != nil || id == "" || r.Model != "fraud" || len(r.Drifted) != 1 || r.Drifted[0].Feature != "user_txn__amount_sum_1h" {
		t.Errorf("event %q: %+v, %v", id, r, err)
	}
}

// metricOrZero is metric, 0 while the endpoint is not up yet.
func metricOrZero(port int, name string) float64 {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && strings.HasPrefix(f[0], name) {
			v, _ := strconv.ParseFloat(f[1], 64)
			sum += v
		}
	}
	return sum
}
