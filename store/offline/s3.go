package offline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options name a store in an S3 bucket, on AWS or an S3-compatible server.
type S3Options struct {
	// Bucket is the bucket's name; required. It must exist.
	Bucket string
	// Prefix is the key prefix the store lives under, without leading or
	// trailing slashes ("quiver/prod" puts the event log under
	// quiver/prod/events/). Default: the bucket's root.
	Prefix string
	// Endpoint is the URL of the S3 API, e.g. "http://127.0.0.1:9000" for
	// an S3-compatible server. Default: https://s3.amazonaws.com.
	Endpoint string
	// Region is the bucket's region. Default: on AWS, the bucket's own
	// (looked up); with an Endpoint, us-east-1.
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials. Default (AccessKeyID empty): the role of the machine,
	// task or pod (EC2 and ECS roles, EKS web identities).
	AccessKeyID, SecretAccessKey, SessionToken string
}

// Validate reports every problem of the options at once.
func (o S3Options) Validate() error {
	var errs []error
	if o.Bucket == "" {
		errs = append(errs, errors.New("no bucket"))
	}
	if o.Prefix != "" && (strings.HasPrefix(o.Prefix, "/") || strings.HasSuffix(o.Prefix, "/") || !fs.ValidPath(o.Prefix)) {
		errs = append(errs, fmt.Errorf("prefix %q: want a relative path without a trailing slash", o.Prefix))
	}
	if o.Endpoint != "" {
		if u, err := url.Parse(o.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("endpoint %q: want http://host[:port] or https://host[:port]", o.Endpoint))
		}
	}
	if (o.AccessKeyID == "") != (o.SecretAccessKey == "") {
		errs = append(errs, errors.New("an access key id needs a secret access key, and the other way round"))
	}
	return errors.Join(errs...)
}

// NewS3Dir returns the store under opts.Prefix in an S3 bucket, checking that
// the bucket is there.
//
// The layout is the same as on a local disk. Each file is written with one
// PUT, which S3 makes visible whole or not at all; until then it exists only
// in memory, so readers never see a temporary object. CreateFile's PUT
// carries If-None-Match: *, so that of two processes creating one file, one
// fails: AWS S3, MinIO and versitygw honour it. A server that ignores the
// header overwrites instead; the registry, CreateFile's user, reads a record
// before creating it, so there only two first registrations of one view
// version at the same moment can race.
func NewS3Dir(ctx context.Context, opts S3Options) (*Dir, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open offline store: %w", err)
	}
	host, secure := "s3.amazonaws.com", true
	if opts.Endpoint != "" {
		u, _ := url.Parse(opts.Endpoint)
		host, secure = u.Host, u.Scheme == "https"
	}
	// Without a region, the client asks AWS where the bucket is (its
	// location) and signs for that region; an S3-compatible server takes
	// us-east-1, as most expect.
	region := opts.Region
	if region == "" && opts.Endpoint != "" {
		region = "us-east-1"
	}
	creds := credentials.NewIAM("")
	if opts.AccessKeyID != "" {
		creds = credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)
	} else {
		// Without a role's credentials requests go unsigned, and the
		// server's refusal would not say why.
		v, err := creds.GetWithContext(&credentials.CredContext{Client: http.DefaultClient, Context: ctx})
		if err == nil && v.AccessKeyID == "" {
			err = errors.New("the role gave none")
		}
		if err != nil {
			return nil, fmt.Errorf("open offline store: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a role (EC2 instance profile, ECS task role, EKS web identity): %w", err)
		}
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("open offline store: %w", err)
	}
	dialer := &net.Dialer{Timeout: s3Timeouts.dial, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, stall: s3Timeouts.stall}, nil
	}
	// The pool closes a connection before its pending read's deadline
	// would.
	tr.IdleConnTimeout = s3Timeouts.stall / 2
	c, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: region, Transport: tr, MaxRetries: s3Timeouts.retries})
	if err != nil {
		return nil, fmt.Errorf("open offline store: %w", err)
	}
	// A listing, not a HEAD of the bucket: a refused HEAD has no body, and
	// the server's reason (a wrong key or region) would be lost.
	b := &s3Bucket{c: minio.Core{Client: c}, bucket: opts.Bucket, prefix: opts.Prefix}
	for obj := range c.ListObjectsIter(ctx, opts.Bucket, minio.ListObjectsOptions{Prefix: b.dirKey("."), MaxKeys: 1}) {
		if err := obj.Err; err != nil {
			if r := minio.ToErrorResponse(err); r.Code != "" {
				err = fmt.Errorf("%w (%s)", err, r.Code)
			}
			return nil, fmt.Errorf("open offline store: bucket %s: %w", opts.Bucket, err)
		}
		break
	}
	return &Dir{b: b,
		url: strings.TrimSuffix("s3://"+opts.Bucket+"/"+opts.Prefix, "/")}, nil
}

// s3Timeouts bound a request to a server that does not answer (a stalled
// server, a network that drops packets): the client's defaults (a minute to
// wait for a response's headers, none for its body, 30 s to connect, ten
// retries) held its caller for ten minutes, or for good once a body had
// begun. An attempt now fails once its connection has moved no byte for
// 20 s, waiting for the headers (S3 answers a PUT within a second or two of
// its body) or in the middle of a body, and waits 10 s to connect; a request
// is tried five times, with back-off, in under two minutes. Ingest tries a
// batch's writes again on top of that (--write-retry).
var s3Timeouts = struct {
	dial, stall time.Duration
	retries     int
}{10 * time.Second, 20 * time.Second, 5}

// stallConn fails a read or a write that has moved no byte for stall. A
// write also moves the read deadline: a request just written waits stall
// for its answer, even behind a read that was pending while the connection
// was idle.
type stallConn struct {
	net.Conn
	stall time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(c.stall)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	if err := c.SetDeadline(time.Now().Add(c.stall)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// s3Bucket is a bucket under a key prefix of an S3 bucket. Directories are
// key prefixes ending in a slash: they exist while a file is under them.
type s3Bucket struct {
	c      minio.Core
	bucket string
	prefix string
}

var _ bucket = (*s3Bucket)(nil)

// key returns the object key of a name in the store ("." is the root).
func (b *s3Bucket) key(name string) string {
	if name == "." {
		name = ""
	}
	switch {
	case b.prefix == "":
		return name
	case name == "":
		return b.prefix
	}
	return b.prefix + "/" + name
}

// s3Error maps the errors of a missing object and of a failed If-None-Match
// to fs.ErrNotExist and fs.ErrExist, and names a conflict's code, which its
// message may not (versitygw's "Existing Object is a directory.").
func s3Error(err error) error {
	switch r := minio.ToErrorResponse(err); {
	case r.StatusCode == http.StatusNotFound || r.Code == minio.NoSuchKey:
		return fmt.Errorf("%w (%w)", fs.ErrNotExist, err)
	case r.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("%w (%w)", fs.ErrExist, err)
	case r.StatusCode == http.StatusConflict:
		return fmt.Errorf("conflict %s: %w", r.Code, err)
	}
	return err
}

// transientConflict reports whether a 409 Conflict of a conditional PUT
// asks for a retry: AWS answers ConditionalRequestConflict to one racing
// another on the same key, and OperationAborted while a conflicting
// operation on the key is in progress; one of them wins. Other codes do
// not go away: a key that is a directory (versitygw's
// ExistingObjectIsDirectory, MinIO's XMinioObjectExistsAsDirectory) or
// below a file (ObjectParentIsFile).
func transientConflict(code string) bool {
	return code == "ConditionalRequestConflict" || code == "OperationAborted"
}

func (b *s3Bucket) open(ctx context.Context, name string) (file, int64, error) {
	info, err := b.c.StatObject(ctx, b.bucket, b.key(name), minio.StatObjectOptions{})
	if err != nil {
		return nil, 0, s3Error(err)
	}
	return &s3File{ctx: ctx, b: b, key: b.key(name), etag: info.ETag}, info.Size, nil
}

// ErrReplaced is the error of a read from a file in an S3 bucket that was
// replaced since it was opened: its old contents are gone, and a reader must
// not mix them with the new. (A file on a local disk is read to its old
// contents.) ReadFile opens and reads the file again instead.
var ErrReplaced = errors.New("offline: file replaced while being read")

// s3File reads an object with a ranged GET per ReadAt. It keeps the context
// of the open call for its reads, as it lives only within that call.
type s3File struct {
	ctx  context.Context
	b    *s3Bucket
	key  string
	etag string // of the object opened: a replaced object is not read
}

func (f *s3File) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return 0, err
	}
	if err := opts.SetMatchETag(f.etag); err != nil {
		return 0, err
	}
	body, _, _, err := f.b.c.GetObject(f.ctx, f.b.bucket, f.key, opts)
	if err != nil {
		switch minio.ToErrorResponse(err).StatusCode {
		case http.StatusRequestedRangeNotSatisfiable:
			return 0, io.EOF
		case http.StatusPreconditionFailed: // If-Match: another object has the key
			return 0, fmt.Errorf("read %s: %w", f.key, ErrReplaced)
		}
		return 0, fmt.Errorf("read %s: %w", f.key, s3Error(err))
	}
	defer body.Close()
	n, err := io.ReadFull(body, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF // the object ends within p
	}
	return n, err
}

func (f *s3File) Close() error { return nil }

func (b *s3Bucket) stat(ctx context.Context, name string) (entry, error) {
	info, err := b.c.StatObject(ctx, b.bucket, b.key(name), minio.StatObjectOptions{})
	if err != nil {
		return entry{}, s3Error(err)
	}
	return entry{name: path.Base(name), size: info.Size, mod: info.LastModified}, nil
}

// dirTime is always the zero time: prefixes have no modification time.
func (b *s3Bucket) dirTime(context.Context, string) (time.Time, error) { return time.Time{}, nil }

// dirKey returns the key prefix of a directory's files ("" for the
// bucket's root).
func (b *s3Bucket) dirKey(dir string) string {
	if prefix := b.key(dir); prefix != "" {
		return prefix + "/"
	}
	return ""
}

func (b *s3Bucket) list(ctx context.Context, dir string) ([]entry, error) {
	prefix := b.dirKey(dir)
	var entries []entry
	for obj := range b.c.ListObjectsIter(ctx, b.bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if obj.Err != nil {
			return nil, obj.Err
		}
		name := strings.TrimPrefix(obj.Key, prefix)
		if sub, ok := strings.CutSuffix(name, "/"); ok {
			entries = append(entries, entry{name: sub, dir: true})
		} else if name != "" {
			entries = append(entries, entry{name: name, size: obj.Size, mod: obj.LastModified})
		}
	}
	return entries, nil
}

// stage keeps the file in memory: an object is written with one PUT.
func (b *s3Bucket) stage(_ context.Context, dir string, write func(io.Writer) error) (staged, error) {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return nil, err
	}
	return &s3Staged{b: b, dir: dir, data: buf.Bytes()}, nil
}

type s3Staged struct {
	b    *s3Bucket
	dir  string
	data []byte // nil once placed or discarded
}

func (s *s3Staged) size() int64 { return int64(len(s.data)) }

// place PUTs the object in one request (no multipart upload, so a file is
// limited to the 5 GiB of one PUT on AWS; compaction aims at 128 MiB).
func (s *s3Staged) place(ctx context.Context, name string, exclusive bool) error {
	if s.data == nil {
		return errors.New("place a staged file twice")
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if exclusive {
		opts.SetMatchETagExcept("*") // If-None-Match: *
	}
	key := s.b.key(path.Join(s.dir, name))
	for attempt := 1; ; attempt++ {
		_, err := s.b.c.PutObject(ctx, s.b.bucket, key, bytes.NewReader(s.data), int64(len(s.data)), "", "", opts)
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusConflict && transientConflict(r.Code) && exclusive && attempt < 5 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return s3Error(err)
		}
		s.data = nil
		return nil
	}
}

func (s *s3Staged) discard() { s.data = nil }

func (b *s3Bucket) remove(ctx context.Context, dir string, names ...string) error {
	for _, name := range names {
		// Removing a key that is not there succeeds.
		if err := b.c.RemoveObject(ctx, b.bucket, b.key(path.Join(dir, name)), minio.RemoveObjectOptions{}); err != nil {
			return s3Error(err)
		}
	}
	return nil
}
