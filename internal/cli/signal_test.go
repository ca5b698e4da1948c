package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
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
	case "open": // prints the memory limit Open leaves
		fs := flag.NewFlagSet("open", flag.ContinueOnError)
		c := cli.AddCommon(fs)
		if err := fs.Parse([]string{"--definitions", "../../examples/fraud/definitions.yaml", "--data-dir", os.Getenv("QUIVER_CLI_TEST_DIR")}); err != nil {
			panic(err)
		}
		if _, _, _, err := c.Open(); err != nil {
			panic(err)
		}
		fmt.Println(debug.SetMemoryLimit(-1))
		os.Exit(0)
	case "parse": // parses the arguments of QUIVER_CLI_TEST_ARGS and exits
		fs := flag.NewFlagSet("parse", flag.ContinueOnError)
		cli.AddCommon(fs)
		fs.Duration("timeout", time.Second, "")
		err := cli.Parse(fs, strings.Fields(os.Getenv("QUIVER_CLI_TEST_ARGS")), os.Getenv)
		if err == nil {
			err = errors.New("parsed")
		}
		cli.Exit(err)
	case "interrupted": // a job that fails with its context's error once stopped
		ctx, stop := cli.SignalContext()
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		cli.Exit(fmt.Errorf("backfill dataset: %w", ctx.Err()))
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

// startHelper starts the helper in mode, its output's lines to scan, its
// standard error kept.
func startHelper(t *testing.T, mode string) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	cmd := helper(t, mode)
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out), stderr
}

// TestSecondSignal: the first SIGTERM starts a clean stop; a second one
// ends the process at once instead of waiting for it.
func TestSecondSignal(t *testing.T) {
	cmd, lines, stderr := startHelper(t, "slow-stop")
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
		if !strings.Contains(stderr.String(), "stopping on a signal signal=terminated") {
			t.Errorf("the helper logged %q, want the first signal logged", stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("still running 10s after the second signal")
	}
}

// TestExitInterrupted: a job stopped part way by a signal says so, not
// "context canceled", and exits as a shell reports the signal's (130 for
// SIGINT).
func TestExitInterrupted(t *testing.T) {
	cmd, lines, stderr := startHelper(t, "interrupted")
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		t.Fatalf("helper printed %q (%v), want ready", lines.Text(), lines.Err())
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("exit: %v, want status 130", err)
	}
	if want := "error: stopped by interrupt before it finished\n"; !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("stderr %q, want it to end with %q", stderr.String(), want)
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

// TestFlagErrorJSON: asked for JSON logs, on the command line or in the
// environment, a flag's error is one JSON record too, without the flag
// package's own text.
func TestFlagErrorJSON(t *testing.T) {
	for _, c := range []struct{ args, env, want string }{
		{args: "--log-format json --bogus", want: "flag provided but not defined: -bogus"},
		{args: "--bogus --log-format=json", want: "flag provided but not defined: -bogus"},
		{args: "--timeout x", env: "QUIVER_LOG_FORMAT=json", want: `invalid value "x" for flag -timeout`},
		{args: "--log-format json", env: "QUIVER_TIMEOUT=x", want: `QUIVER_TIMEOUT="x"`},
	} {
		cmd := helper(t, "parse")
		cmd.Env = append(cmd.Env, "QUIVER_CLI_TEST_ARGS="+c.args, c.env)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		cmd.Run()
		out := strings.TrimSuffix(stderr.String(), "\n")
		var rec struct{ Level, Err string }
		if strings.Contains(out, "\n") || json.Unmarshal([]byte(out), &rec) != nil || !strings.Contains(rec.Err, c.want) {
			t.Errorf("%s %s: stderr\n%s\nwant one JSON record of the error %s", c.env, c.args, out, c.want)
		}
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

// TestMemoryLimit: a process whose memory cgroup allows 1 GiB runs with
// the runtime's memory limit at 90% of it, so that the collector, not the
// kernel, keeps it under. Creating the cgroup takes root and cgroup v1's
// memory hierarchy or v2 with the memory controller.
func TestMemoryLimit(t *testing.T) {
	dir := filepath.Join("/sys/fs/cgroup/memory", "quiver-test-"+strconv.Itoa(os.Getpid()))
	limitFile := "memory.limit_in_bytes"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir, limitFile = filepath.Join("/sys/fs/cgroup", filepath.Base(dir)), "memory.max"
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a memory cgroup here: %v", err)
	}
	defer os.Remove(dir)
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte("1073741824"), 0o644); err != nil {
		t.Skipf("cannot limit a memory cgroup here: %v", err)
	}
	// The shell joins the cgroup, then becomes the helper.
	cmd := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, os.Args[0], "-test.run=^$")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { // they would override the cgroup's
		return strings.HasPrefix(e, "GOMEMLIMIT=") || strings.HasPrefix(e, "AUTOMEMLIMIT=")
	})
	cmd.Env = append(cmd.Env, helperEnv+"=open", "QUIVER_CLI_TEST_DIR="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), strconv.Itoa(1<<30*9/10); got != want {
		t.Fatalf("memory limit %s, want %s (90%% of the cgroup's 1 GiB)", got, want)
	}
}
