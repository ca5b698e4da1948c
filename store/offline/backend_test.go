package offline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/s3test"
	"github.com/quiver-ml/quiver/store/offline"
)

// fixture is a store under test, with what a test needs to reach its files
// the way another process, or a crash, would.
type fixture struct {
	*offline.Dir
	// reopen returns another Dir on the same files: another process.
	reopen func(t testing.TB) *offline.Dir
	// files returns every file below dir, temporary ones included, relative
	// to it, sorted.
	files func(t testing.TB, dir string) []string
	// root is the store's directory on a local disk; "" in a bucket.
	root string
}

// eachBackend runs test against a store on a local disk and against one in
// a bucket of a real S3-compatible server.
func eachBackend(t *testing.T, test func(t *testing.T, s *fixture)) {
	t.Run("disk", func(t *testing.T) { test(t, diskStore(t)) })
	t.Run("s3", func(t *testing.T) { test(t, s3Store(t)) })
}

func diskStore(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	s := &fixture{Dir: mustDir(t, root), root: root}
	s.reopen = func(t testing.TB) *offline.Dir { return mustDir(t, root) }
	s.files = func(t testing.TB, dir string) []string {
		t.Helper()
		var files []string
		base := filepath.Join(root, dir)
		err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			files = append(files, filepath.ToSlash(rel))
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		slices.Sort(files)
		return files
	}
	return s
}

// s3Store is a store under a prefix of a new bucket of its own server.
func s3Store(t testing.TB) *fixture {
	t.Helper()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	const prefix = "quiver/offline"
	open := func(t testing.TB) *offline.Dir {
		t.Helper()
		d, err := offline.NewS3Dir(context.Background(), srv.Options(bucket, prefix))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	s := &fixture{Dir: open(t), reopen: open}
	s.files = func(t testing.TB, dir string) []string {
		return srv.Keys(t, bucket, path.Join(prefix, dir))
	}
	return s
}

func mustDir(t testing.TB, root string) *offline.Dir {
	t.Helper()
	d, err := offline.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readLogFile reads a file of the store by its name.
func (s *fixture) readLogFile(t testing.TB, name string) ([]offline.Column, [][]features.Value, map[string]string) {
	t.Helper()
	cols, rows, meta, err := s.ReadLogFile(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cols, rows, meta
}

func TestS3OptionsValidate(t *testing.T) {
	bad := offline.S3Options{Prefix: "/a/", Endpoint: "ftp://x", AccessKeyID: "id"}
	err := bad.Validate()
	for _, want := range []string{"no bucket", "prefix", "endpoint", "secret access key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want a problem about %s", err, want)
		}
	}
	good := offline.S3Options{Bucket: "b", Prefix: "a/b", Endpoint: "http://127.0.0.1:9000", AccessKeyID: "id", SecretAccessKey: "s"}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v): %v", good, err)
	}
}

// TestNewS3DirMissingBucket: opening a store in a bucket that is not there
// fails at once, naming the bucket.
func TestNewS3DirMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	_, err := offline.NewS3Dir(context.Background(), srv.Options("nowhere", ""))
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("NewS3Dir in a missing bucket: %v, want an error naming it", err)
	}
}

// TestNewS3DirRefused: a server that refuses the store's first request
// says why, and the error passes it on: a key it does not know, or
// another region than the bucket's. A bucket name S3 cannot have is
// refused as such.
func TestNewS3DirRefused(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	for _, c := range []struct {
		name string
		edit func(*offline.S3Options)
		want string
	}{
		{"unknown key", func(o *offline.S3Options) { o.AccessKeyID = "nobody" }, "access key"},
		{"wrong region", func(o *offline.S3Options) { o.Region = "eu-west-9" }, "eu-west-9"},
		{"bad bucket name", func(o *offline.S3Options) { o.Bucket = "Bad_Bucket" }, "not valid"},
	} {
		opts := srv.Options(bucket, "")
		c.edit(&opts)
		_, err := offline.NewS3Dir(context.Background(), opts)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.want)
		}
	}
}

// TestNewS3DirNoCredentials: without static credentials and with no role to
// take them from, opening a store says that no credentials were found,
// rather than passing on the server's refusal of an unsigned request.
func TestNewS3DirNoCredentials(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	// The role's credentials come from a container endpoint that is not
	// there (and so not from the machine's metadata service, whatever the
	// machine).
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds")
	opts := srv.Options(bucket, "")
	opts.AccessKeyID, opts.SecretAccessKey = "", ""
	_, err := offline.NewS3Dir(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "no credentials") || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("NewS3Dir without credentials: %v; want an error saying there are none and how to give them", err)
	}
}

// TestS3CreateFilePermanentConflict: a create that the server refuses with
// a 409 Conflict no retry resolves (versitygw's for a key that is a
// directory, or below a file) fails at once, naming the conflict's code,
// not after the half second of retries (pauses of 50, 100, 150 and 200 ms)
// that the conflicts S3 asks to retry get.
func TestS3CreateFilePermanentConflict(t *testing.T) {
	d := s3Store(t)
	if err := d.CreateFile(context.Background(), "a/b/c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for name, code := range map[string]string{"a/b": "ExistingObjectIsDirectory", "a/b/c/d": "ObjectParentIsFile"} {
		start := time.Now()
		err := d.CreateFile(context.Background(), name, []byte("y"))
		if elapsed := time.Since(start); err == nil || !strings.Contains(err.Error(), code) || elapsed > 250*time.Millisecond {
			t.Errorf("CreateFile(%s): %v after %v; want an error naming %s at once", name, err, elapsed.Round(time.Millisecond), code)
		}
	}
}

// s3Through returns a store in a new bucket of its own server, reached
// through a front that first calls answer: it answers the request itself,
// or through pass (to the server), and returns true, or returns false for
// the front to pass it on.
func s3Through(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, pass http.Handler) bool) *offline.Dir {
	t.Helper()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !answer(w, r, proxy) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(front.Close)
	opts := srv.Options(bucket, "quiver")
	opts.Endpoint = front.URL
	d, err := offline.NewS3Dir(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestS3CreateFileTransientConflict: a 409 Conflict that S3 answers to a
// conditional PUT racing another (ConditionalRequestConflict) is retried,
// and the file is written once it clears; one that never clears fails
// after five attempts, naming the code. The conflicts are answered by a
// proxy in front of the server, as AWS would answer them.
func TestS3CreateFileTransientConflict(t *testing.T) {
	var conflicts, puts atomic.Int64 // conflicts to answer before passing PUTs on
	d := s3Through(t, func(w http.ResponseWriter, r *http.Request, _ http.Handler) bool {
		if r.Method != http.MethodPut || r.Header.Get("If-None-Match") != "*" {
			return false
		}
		puts.Add(1)
		if conflicts.Add(-1) < 0 {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code>`+
			`<Message>A conflicting conditional operation is currently in progress against this resource. Please try again.</Message></Error>`)
		return true
	})
	ctx := context.Background()

	conflicts.Store(2)
	if err := d.CreateFile(ctx, "a", []byte("x")); err != nil {
		t.Fatalf("after two conflicts: %v", err)
	}
	if got, err := d.ReadFile(ctx, "a"); err != nil || string(got) != "x" {
		t.Errorf("read %q, %v; want x", got, err)
	}
	if n := puts.Load(); n != 3 {
		t.Errorf("%d PUTs, want 3", n)
	}

	conflicts.Store(100)
	puts.Store(0)
	if err := d.CreateFile(ctx, "b", []byte("y")); err == nil || !strings.Contains(err.Error(), "ConditionalRequestConflict") {
		t.Errorf("conflicts that never clear: %v, want an error naming ConditionalRequestConflict", err)
	}
	if n := puts.Load(); n != 5 {
		t.Errorf("%d PUTs, want 5", n)
	}
}

// TestS3Stalled: a server that takes connections but answers nothing (a
// stalled server, a network that drops packets) fails a write within the
// client's timeouts, rather than hold its caller for minutes, and the store
// works again once the server answers.
func TestS3Stalled(t *testing.T) {
	defer offline.SetS3Timeouts(500*time.Millisecond, 2)()
	srv := s3test.Start(t)
	d, err := offline.NewS3Dir(context.Background(), srv.Options(srv.NewBucket(t), "p"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	start := time.Now()
	err = d.ReplaceFile(context.Background(), "a/b.json", []byte("x"))
	took := time.Since(start)
	srv.Resume()
	if err == nil || took > 10*time.Second {
		t.Errorf("a write to a stalled server: %v after %s, want an error within 10 s (2 tries of 0.5 s and back-off)", err, took.Round(time.Millisecond))
	}
	if err := d.ReplaceFile(context.Background(), "a/b.json", []byte("x")); err != nil {
		t.Errorf("a write once the server answers again: %v", err)
	}
}

// TestS3BodyStalled: a response whose body stops part way (a server or a
// network that stalls once the headers are sent) fails the read once its
// connection has moved no byte for the stall timeout, rather than hold the
// reader for good, and the file reads whole once the bodies flow again.
func TestS3BodyStalled(t *testing.T) {
	defer offline.SetS3Timeouts(500*time.Millisecond, 2)()
	var stall atomic.Bool
	d := s3Through(t, func(w http.ResponseWriter, r *http.Request, pass http.Handler) bool {
		if r.Method != http.MethodGet || !stall.Load() {
			return false
		}
		pass.ServeHTTP(&cutWriter{ResponseWriter: w, left: 1 << 10, done: r.Context().Done()}, r)
		return true
	})
	ctx := context.Background()
	data := bytes.Repeat([]byte("quiver "), 1<<20)
	if err := d.ReplaceFile(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
	stall.Store(true)
	start := time.Now()
	_, err := d.ReadFile(ctx, "big")
	took := time.Since(start)
	stall.Store(false)
	if err == nil || took > 10*time.Second {
		t.Errorf("a read whose body stalls: %v after %s, want an error within 10 s", err, took.Round(time.Millisecond))
	}
	if got, err := d.ReadFile(ctx, "big"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read once bodies flow again: %d bytes, %v; want the %d written", len(got), err, len(data))
	}
}

// cutWriter passes the status, the headers and the first left bytes of a
// body on, then holds the response until done.
type cutWriter struct {
	http.ResponseWriter
	left int
	done <-chan struct{}
}

func (w *cutWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.left)
	w.left -= n
	if _, err := w.ResponseWriter.Write(p[:n]); err != nil {
		return 0, err
	}
	if n == len(p) {
		return n, nil
	}
	http.NewResponseController(w.ResponseWriter).Flush()
	<-w.done
	return n, errors.New("cut")
}
