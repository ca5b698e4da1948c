// Package s3test runs a real S3-compatible server for tests: versitygw
// (github.com/versity/versitygw) with its posix backend, in a temporary
// directory, on a free port. make test-deps builds it into bin/tools/.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/quiver-ml/quiver/internal/freeport"
	"github.com/quiver-ml/quiver/store/offline"
)

// The root user's credentials of every server Start runs.
const (
	AccessKey = "quiver-test"
	SecretKey = "quiver-test-secret"
	Region    = "us-east-1"
)

// Server is a running S3-compatible server.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Client   *minio.Client
	buckets  atomic.Int64
	t        testing.TB
	bin      string
	args     []string
	root     string // the posix backend's directory
	log      *os.File
	cmd      *exec.Cmd
}

// Start runs versitygw for the test, stopped when it ends. A missing binary
// fails the test, asking for make test-deps.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: Region})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Endpoint: "http://" + addr, Client: c, t: t, bin: bin, root: root, log: logFile,
		args: []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", addr, "--quiet", "posix", root}}
	t.Cleanup(func() {
		s.Kill()
		logFile.Close()
		if t.Failed() {
			if out, _ := os.ReadFile(logFile.Name()); len(out) > 0 {
				t.Logf("versitygw's log:\n%s", out)
			}
		}
	})
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = s.Client.ListBuckets(context.Background()); err == nil {
			return
		}
	}
	s.t.Fatalf("versitygw did not answer within 10s: %v", err)
}

// Kill stops the server at once, as a crash or an outage does.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Pause stops the server's process (SIGSTOP): the kernel still takes
// connections, and nothing answers them, as with a stalled server or a
// network that drops packets, until Resume.
//
// It returns once every thread of the server has stopped: a signal takes
// effect when a thread is next scheduled, and a request sent before then
// could still be answered.
func (s *Server) Pause() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGSTOP)
	for deadline := time.Now().Add(10 * time.Second); !stopped(s.cmd.Process.Pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatal("s3test: the server has not stopped 10 s after SIGSTOP")
		}
	}
}

// stopped reports whether every thread of process pid is stopped: state T
// in /proc, after the command's closing parenthesis.
func stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		i := strings.LastIndexByte(string(stat), ')')
		if err != nil || i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume lets a paused server go on (SIGCONT).
func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart kills the server and starts it again on the same port, over the
// same files.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// binary finds versitygw: in bin/tools/ of the module the test runs in, where
// make test-deps puts it, or on the PATH.
func binary() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, "bin", "tools", "versitygw")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", errors.New("versitygw, the S3-compatible server the tests run, is neither in bin/tools/ nor on the PATH: run make test-deps")
}

// NewBucket creates an empty bucket and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("quiver-%d", s.buckets.Add(1))
	if err := s.Client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

// Path returns the directory in which the server keeps the objects under
// prefix of bucket as files, one per object: to read them as they were
// stored, without the S3 API.
func (s *Server) Path(bucket, prefix string) string {
	return filepath.Join(s.root, bucket, filepath.FromSlash(prefix))
}

// Options returns the options of a store in bucket under prefix.
func (s *Server) Options(bucket, prefix string) offline.S3Options {
	return offline.S3Options{Bucket: bucket, Prefix: prefix, Endpoint: s.Endpoint, Region: Region,
		AccessKeyID: AccessKey, SecretAccessKey: SecretKey}
}

// Env returns the environment that points Quiver's binaries and the AWS
// tools at the server: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
// and AWS_ENDPOINT_URL_S3.
func (s *Server) Env() map[string]string {
	return map[string]string{"AWS_ACCESS_KEY_ID": AccessKey, "AWS_SECRET_ACCESS_KEY": SecretKey,
		"AWS_REGION": Region, "AWS_ENDPOINT_URL_S3": s.Endpoint}
}

// Keys returns the keys of every object under prefix (a directory, without
// a trailing slash; "" for all), relative to it, sorted.
func (s *Server) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	if prefix != "" {
		prefix += "/"
	}
	var keys []string
	for obj := range s.Client.ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, strings.TrimPrefix(obj.Key, prefix))
	}
	return keys
}
