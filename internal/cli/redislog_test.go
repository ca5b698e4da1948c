package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRedisLogIsJSON: what go-redis says of a Redis it cannot reach is a
// line of the JSON log, not a line of its own, and its retries do not
// repeat it.
func TestRedisLogIsJSON(t *testing.T) {
	var buf bytes.Buffer
	log, err := Logger(&buf, "json")
	if err != nil {
		t.Fatal(err)
	}
	redis.SetLogger(newRedisLog(log))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	for range 3 {
		if err := rdb.Ping(context.Background()).Err(); err == nil {
			t.Fatal("ping of a closed port: no error")
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if buf.Len() == 0 || len(lines) != 1 {
		t.Fatalf("go-redis logged %d lines for three failed pings, want one:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var rec struct{ Level, Msg, Library string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Library != "go-redis" || rec.Level != "WARN" || !strings.Contains(rec.Msg, "dial") {
			t.Errorf("log line %q (%v): want a JSON warning from go-redis about dialing", l, err)
		}
	}
}

// TestRedisLogLevels: how a client behind Sentinels finds its master is
// information, not a warning that would trip log-based alerts.
func TestRedisLogLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := Logger(&buf, "json")
	if err != nil {
		t.Fatal(err)
	}
	l := newRedisLog(log)
	l.Printf(context.Background(), "sentinel: new master=%q addr=%q", "quiver", "10.0.0.2:6379")
	l.Printf(context.Background(), "sentinel: GetMasterAddrByName addr=%s, master=%q failed: %s", "10.0.0.9:26379", "quiver", "i/o timeout")
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		levels = append(levels, rec.Level)
	}
	if want := []string{"INFO", "WARN"}; !slices.Equal(levels, want) {
		t.Errorf("levels %v, want %v", levels, want)
	}
}
