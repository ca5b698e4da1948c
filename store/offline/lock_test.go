package offline_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/store/offline"
)

// A held lock is renewed in the background, so no other process takes it
// however long it is held; once released, the next one takes it at once.
func TestLockHold(t *testing.T) {
	d := diskStore(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	l, err := d.Lock(ctx, "_replay", "starting", ttl)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := l.Hold(ctx)
	time.Sleep(3 * ttl)
	if _, err := d.reopen(t).Lock(ctx, "_replay", "starting", ttl); !errors.Is(err, offline.ErrLocked) {
		t.Fatalf("a lock held for three times its time to live: %v, want ErrLocked", err)
	}
	if err := held.Err(); err != nil {
		t.Fatalf("the holder's context: %v", err)
	}
	stop()
	l.Release()
	next, err := d.reopen(t).Lock(ctx, "_replay", "starting", ttl)
	if err != nil {
		t.Fatalf("the lock once released: %v", err)
	}
	next.Release()
	if left := d.files(t, "_replay"); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}

// A holder whose lock another process took over (its renewals stopped
// past the time to live: here, its file made old) learns it from its held
// context, whose cause says so.
func TestLockHoldLost(t *testing.T) {
	d := diskStore(t)
	ctx := context.Background()
	const ttl = time.Minute
	l, err := d.Lock(ctx, "_replay", "starting", ttl)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * ttl)
	if err := os.Chtimes(filepath.Join(d.root, "_replay", "_starting.1"), old, old); err != nil {
		t.Fatal(err)
	}
	other, err := d.reopen(t).Lock(ctx, "_replay", "starting", ttl)
	if err != nil {
		t.Fatalf("taking over a stale lock: %v", err)
	}
	defer other.Release()
	if err := l.Keep(ctx); !errors.Is(err, offline.ErrLocked) {
		t.Fatalf("the old holder renewing: %v, want ErrLocked", err)
	}
	short, err := d.reopen(t).Lock(ctx, "short", "starting", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := short.Hold(ctx)
	defer stop()
	if err := os.Remove(filepath.Join(d.root, "short", "_starting.1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		if cause := context.Cause(held); !errors.Is(cause, offline.ErrLocked) {
			t.Errorf("cause: %v, want ErrLocked", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held context did not end once the lock was lost")
	}
}

// A lock whose holder was killed is taken at once by a process on the same
// machine, not once its time to live passes; while its holder runs, it is
// refused, naming the holder.
func TestLockHolderGone(t *testing.T) {
	if root := os.Getenv("QUIVER_TEST_LOCK_ROOT"); root != "" {
		// The holder: it takes the lock, says so, and waits to be killed.
		if _, err := mustDir(t, root).Lock(context.Background(), "_replay", "starting", time.Hour); err != nil {
			t.Fatal(err)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		return
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here: a dead holder's lock is taken once its time to live passes (TestLockHoldLost)")
	}
	d := diskStore(t)
	ctx := context.Background()
	holder := exec.Command(os.Args[0], "-test.run=^TestLockHolderGone$")
	holder.Env = append(os.Environ(), "QUIVER_TEST_LOCK_ROOT="+d.root)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the holder said %q (%v)", line, err)
	}
	_, err = d.Lock(ctx, "_replay", "starting", time.Hour)
	if !errors.Is(err, offline.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d,", holder.Process.Pid)) {
		t.Fatalf("the lock while its holder runs: %v, want ErrLocked naming pid %d", err, holder.Process.Pid)
	}
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	l, err := d.Lock(ctx, "_replay", "starting", time.Hour)
	if err != nil {
		t.Fatalf("the lock once its holder was killed: %v", err)
	}
	l.Release()
	if left := d.files(t, "_replay"); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}
