package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/internal/cli"
)

// TestMain runs this test binary as a small program when a test asks it to
// (helperEnv), so that signals and exits are those of a real process.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "slow-stop": // stops slowly after the first signal
		ctx, stop := cli.SignalContext()
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("stopping")
		time.Sleep(time.Minute)
		os.Exit(0)
	case "json-exit":
		slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		cli.Exit(errors.New("definitions: 2 problem(s):\na.yaml:1:1: one\na.yaml:2:1: two"))
	}
}

const helperEnv = "QUIVER_CLI_TEST_HELPER"

func helper(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// TestSecondSignal: the first SIGTERM starts a clean stop; a second one
// ends the process at once instead of waiting for it.
func TestSecondSignal(t *testing.T) {
	cmd := helper(t, "slow-stop")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			cmd.Process.Kill()
			t.Fatalf("helper printed %q (%v), want %q", lines.Text(), lines.Err(), want)
		}
	}
	expect("ready")
	cmd.Process.Signal(syscall.SIGTERM)
	expect("stopping")
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("second signal: %v, want the process killed by SIGTERM", err)
		}
		t.Logf("ended %s after the second signal", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("still running 10s after the second signal")
	}
}

// TestExitJSON: with a JSON logger, the error that stops a binary is one
// JSON record, its lines kept in one string.
func TestExitJSON(t *testing.T) {
	cmd := helper(t, "json-exit")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	out := strings.TrimSuffix(stderr.String(), "\n")
	var rec struct{ Level, Msg, Err string }
	if strings.Contains(out, "\n") || json.Unmarshal([]byte(out), &rec) != nil {
		t.Fatalf("stderr is not one JSON record:\n%s", out)
	}
	if rec.Level != "ERROR" || !strings.HasSuffix(rec.Err, "a.yaml:2:1: two") {
		t.Errorf("record %+v, want level ERROR and the whole error", rec)
	}
}

// TestStopped: an error that is only the signal's end of the context is
// a clean stop; any other error stays one.
func TestStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	startup := fmt.Errorf("--redis-addr 127.0.0.1:6379: %w", context.Canceled)
	other := errors.New("list source topics: connection refused")
	if err := cli.Stopped(ctx, startup); err != startup {
		t.Errorf("before a signal: %v, want the error", err)
	}
	cancel()
	if err := cli.Stopped(ctx, startup); err != nil {
		t.Errorf("after a signal: %v, want nil", err)
	}
	if err := cli.Stopped(ctx, other); err != other {
		t.Errorf("after a signal, another error: %v, want it", err)
	}
}
