package offline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
