package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quiver-ml/quiver/store/offline"
)

func TestFilePath(t *testing.T) {
	for in, want := range map[string]string{
		"file:///var/lib/quiver/offline":          "/var/lib/quiver/offline",
		"file://localhost/var/lib/quiver/offline": "/var/lib/quiver/offline",
		"file://./data/offline":                   "./data/offline",
		"file://data/offline":                     "data/offline",
		"file:data/offline":                       "data/offline",
		"file://../shared/offline":                "../shared/offline",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := filePath(u); got != want {
			t.Errorf("%s: path %q, want %q", in, got, want)
		}
	}
}

func TestS3Options(t *testing.T) {
	env := map[string]string{
		"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "eu-west-1",
		"AWS_ENDPOINT_URL": "https://generic:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
	}
	u, _ := url.Parse("s3://features/quiver/prod/")
	got := s3Options(u, func(k string) string { return env[k] })
	want := offline.S3Options{Bucket: "features", Prefix: "quiver/prod", Endpoint: "http://127.0.0.1:9000",
		Region: "eu-west-1", AccessKeyID: "id", SecretAccessKey: "secret"}
	if got != want {
		t.Fatalf("options %+v, want %+v", got, want)
	}
	env["AWS_REGION"] = "us-west-2"
	delete(env, "AWS_ENDPOINT_URL_S3")
	u, _ = url.Parse("s3://features")
	got = s3Options(u, func(k string) string { return env[k] })
	if got.Region != "us-west-2" || got.Endpoint != "https://generic:1" || got.Prefix != "" {
		t.Fatalf("options %+v: want AWS_REGION over AWS_DEFAULT_REGION, AWS_ENDPOINT_URL without the S3 one, no prefix", got)
	}
}

// TestOfflineURLQuery: a query or fragment in --offline is refused, not
// dropped: nothing reads it.
func TestOfflineURLQuery(t *testing.T) {
	for _, u := range []string{"s3://bucket/prefix?region=eu-west-1", "file:///var/lib/quiver#x"} {
		c := &Common{Offline: u}
		if _, err := c.openOffline(); err == nil || !strings.Contains(err.Error(), "a query or fragment means nothing here") {
			t.Errorf("--offline %s: %v, want it refused", u, err)
		}
	}
}

// TestAwaitLogsEachCause: a wait logs its first cause and each new one (a
// broker that comes up but refuses the credentials), not every try.
func TestAwaitLogsEachCause(t *testing.T) {
	defer func(d time.Duration) { awaitEvery = d }(awaitEvery)
	awaitEvery = time.Millisecond
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	causes := []string{"connection refused", "connection refused", "connection refused", "SASL authentication failed", "SASL authentication failed"}
	err := Await(context.Background(), log, "Kafka", func(context.Context) error {
		if len(causes) == 0 {
			return nil
		}
		err := errors.New(causes[0])
		causes = causes[1:]
		return err
	})
	want := `level=WARN msg="waiting for Kafka" err="connection refused"
level=WARN msg="waiting for Kafka" err="SASL authentication failed"
level=INFO msg="Kafka answers"
`
	if err != nil || buf.String() != want {
		t.Errorf("Await: %v, logged:\n%s\nwant:\n%s", err, buf.String(), want)
	}
}
