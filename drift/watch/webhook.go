package watch

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/quiver-ml/quiver/drift"
)

// SignatureHeader carries the HMAC-SHA256 of a webhook's body under the
// shared secret, as sha256=<hex>.
const SignatureHeader = "X-Quiver-Signature"

// Webhook delivers each retraining event, as structured CloudEvents JSON,
// by an HTTP POST, retried with exponential backoff; receivers deduplicate
// by the event's id. The retrain topic is the record of events: a delivery
// still queued or retrying when ingest stops is not made.
type Webhook struct {
	URL    string
	Secret []byte // signs each body when set
	// Attempts is how many times a delivery is tried, default 6; Backoff
	// the wait before the first retry, doubling after each, default 1s.
	Attempts int
	Backoff  time.Duration
	Client   *http.Client // default: a client with a 10s timeout
}

// Sign returns the signature header's value for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// deliver posts the queued events until ctx ends.
func (m *Monitor) deliver(ctx context.Context) {
	w := m.cfg.Webhook
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-m.webhookQueue:
			if err := w.post(ctx, body); err != nil {
				m.m.webhook.WithLabelValues("failed").Inc()
				m.log.Error("drift: webhook delivery failed", "url", w.endpoint(), "err", err)
				continue
			}
			m.m.webhook.WithLabelValues("ok").Inc()
		}
	}
}

// post delivers one event, retrying server errors, throttling and network
// failures; a 4xx other than 408 and 429 is final.
func (w *Webhook) post(ctx context.Context, body []byte) error {
	attempts, backoff, client := w.Attempts, w.Backoff, w.Client
	if attempts <= 0 {
		attempts = 6
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	if client == nil {
		// A redirect would turn the POST into a GET without the event: a
		// 3xx is an answer, and a failure.
		client = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	var err error
	for i := range attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff << (i - 1)):
			}
		}
		var retry bool
		if retry, err = w.try(ctx, client, body); err == nil || !retry {
			return err
		}
	}
	return fmt.Errorf("after %d attempts: %w", attempts, err)
}

func (w *Webhook) try(ctx context.Context, client *http.Client, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", drift.ContentType)
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	}
	resp, err := client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		ue.URL = w.endpoint()
	}
	if err != nil {
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("%s: %s", w.endpoint(), resp.Status)
	default:
		return false, fmt.Errorf("%s: %s", w.endpoint(), resp.Status)
	}
}

// endpoint is the URL as logs and errors name it: its scheme and host.
// A webhook's path or query often holds its secret (a Slack webhook's
// path, a token parameter), as its user information may.
func (w *Webhook) endpoint() string {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "(the webhook URL)"
	}
	e := u.Scheme + "://" + u.Host
	if u.Path != "" || u.RawQuery != "" {
		e += "/…"
	}
	return e
}
