package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/freeport"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemo runs the README's demo script on free ports: it prints a curl
// within about 15 seconds, the curl returns PRESENT values only; the drift
// command it prints makes ingest publish a retraining event within about a
// minute, the retraining loop makes a canary version that serve answers
// with; and Ctrl-C (SIGINT) stops every process it started.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs four processes for several seconds")
	}
	httpPort := freeport.Get(t)
	cmd := exec.Command("examples/fraud/demo.sh")
	cmd.Dir = "../.."
	demoDir := t.TempDir()
	cmd.Env = append(os.Environ(), "DEMO_BIN="+bin, "DEMO_DIR="+demoDir, "DEMO_HTTP_PORT="+strconv.Itoa(httpPort),
		"DEMO_KAFKA_PORT="+strconv.Itoa(freeport.Get(t)), "DEMO_METRICS_PORT="+strconv.Itoa(freeport.Get(t)))
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when the demo script exits, with waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		// However the test ends, nothing the demo started outlives it:
		// Ctrl-C first, which stops them in order; then each process's
		// group (the demo runs each in a session of its own) is killed.
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		for _, m := range regexp.MustCompile(`\(pid (\d+)\)`).FindAllStringSubmatch(out.String(), -1) {
			if pid, err := strconv.Atoi(m[1]); err == nil {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
			for _, name := range []string{"retrain", "ingest", "serve", "generate"} {
				tail(t, filepath.Join(demoDir, name+".log"))
			}
		}
	}()

	began := time.Now()
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case <-done:
			t.Fatalf("the demo exited: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(began) > 60*time.Second {
			t.Fatal("no curl printed within 60s")
		}
	}
	t.Logf("curl printed %v after start", time.Since(began).Round(100*time.Millisecond))
	line := regexp.MustCompile(`(?m)^\s+(curl -s -X POST .*)$`).FindStringSubmatch(out.String())
	if line == nil {
		t.Fatal("no curl command in the output")
	}
	got, err := exec.Command("bash", "-c", line[1]).Output()
	if err != nil {
		t.Fatalf("%s: %v", line[1], err)
	}
	if !bytes.Contains(got, []byte(`"PRESENT"`)) || bytes.Contains(got, []byte("NOT_FOUND")) || bytes.Contains(got, []byte("OUTSIDE_MAX_AGE")) {
		t.Fatalf("the curl returned %s, want PRESENT values only", got)
	}
	// The prediction the demo shows: the trained fraud model's probability.
	curls := regexp.MustCompile(`(?m)^\s+(curl -s -X POST .*/predict .*)$`).FindStringSubmatch(out.String())
	if curls == nil {
		t.Fatal("no predict curl in the output")
	}
	got, err = exec.Command("bash", "-c", curls[1]).Output()
	if err != nil {
		t.Fatalf("%s: %v", curls[1], err)
	}
	var pred struct {
		Model       string
		Predictions []float64
	}
	if err := json.Unmarshal(got, &pred); err != nil || pred.Model != "fraud" || len(pred.Predictions) != 1 || pred.Predictions[0] <= 0 || pred.Predictions[0] >= 1 {
		t.Fatalf("the predict curl returned %s (%v), want a probability", got, err)
	}
	pids := regexp.MustCompile(`\(pid (\d+)\)`).FindAllStringSubmatch(out.String(), -1)
	if len(pids) != 5 {
		t.Fatalf("want 5 processes in the output, found %d", len(pids))
	}

	// The drift switch, then the retraining event, read as the demo says.
	printed := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^\s+(` + re + `)(\s+#.*)?$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no %q command in the output", re)
		}
		return m[1]
	}
	// Users need a history to drift from: the demo says to wait a little.
	time.Sleep(time.Until(began.Add(30 * time.Second)))
	if err := exec.Command("bash", "-c", printed(`kill -USR1 \d+`)).Run(); err != nil {
		t.Fatal(err)
	}
	drifted := time.Now()
	kcat := printed(`kcat -C .*`)
	for {
		got, _ := exec.Command("bash", "-c", kcat+" -q").Output()
		if bytes.Contains(got, []byte(`"type":"quiver.retrain.requested"`)) {
			break
		}
		if time.Since(drifted) > 90*time.Second {
			t.Fatalf("no retraining event within 90s of the drift switch (%q printed %q)", kcat, got)
		}
		time.Sleep(time.Second)
	}
	t.Logf("retraining event %v after the drift switch", time.Since(drifted).Round(100*time.Millisecond))
	models := printed(`curl -s \S+/v1/models`)
	for {
		got, _ := exec.Command("bash", "-c", models).Output()
		if bytes.Contains(got, []byte(`"canary":{"version":2`)) {
			break
		}
		if time.Since(drifted) > 3*time.Minute {
			t.Fatalf("no canary version within 3 minutes of the drift switch: %s", got)
		}
		time.Sleep(time.Second)
	}
	t.Logf("canary version 2 %v after the drift switch", time.Since(drifted).Round(100*time.Millisecond))
	// One event, for the breach's third window, however long the drift
	// goes on (the cooldown).
	got, err = exec.Command("bash", "-c", kcat+" -q").Output()
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(events) != 1 {
		t.Fatalf("%d retraining events, want 1:\n%s", len(events), got)
	}
	var ev struct {
		Data struct {
			Model   string
			Window  struct{ Consecutive int }
			Drifted []struct{ Feature string } `json:"drifted_features"`
		}
	}
	if err := json.Unmarshal([]byte(events[0]), &ev); err != nil || ev.Data.Model != "fraud" || ev.Data.Window.Consecutive != 3 ||
		len(ev.Data.Drifted) != 1 || ev.Data.Drifted[0].Feature != "amount_vs_avg" {
		t.Errorf("event %s (%v), want fraud's amount_vs_avg after 3 windows", events[0], err)
	}
	// 10% of users, sticky, go to the canary: one of 100 users will.
	canary := false
	for u := 0; u < 100 && !canary; u++ {
		body := strings.NewReader(fmt.Sprintf(`{"entities": {"user_id": ["u%06d"], "merchant_id": ["m00003"]}, "request_context": {"amount": 50}}`, u))
		resp, err := http.Post("http://127.0.0.1:"+strconv.Itoa(httpPort)+"/v1/models/fraud/predict", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Version int }
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		canary = p.Version == 2
	}
	if !canary {
		t.Error("no prediction of 100 users came from the canary")
	}

	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not stop within 60s of SIGINT")
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %s still runs after the demo stopped", m[1])
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
