package serve_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkLargeBodies sends 50 lookups at once, each of 1,000 entities
// with 98 request context values per entity (99,000 JSON values, 200 KB),
// and reports the peak heap while serve decodes and answers them: what a
// flood of large requests costs in memory. The ceiling is the bodies
// themselves (body-MB).
func BenchmarkLargeBodies(b *testing.B) {
	f := newFixture(b)
	var body strings.Builder
	body.WriteString(`{"features": ["user_txn@1:txn_count_1h"], "entities": {"user_id": [` + strings.Repeat(`"u1",`, 999) + `"u1"]}, "request_context": {`)
	for k := range 98 {
		if k > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `"k%d": [%s1]`, k, strings.Repeat("1,", 999))
	}
	body.WriteString("}}")
	const clients = 50
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	for b.Loop() {
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				metrics.Read(sample)
				peak = max(peak, sample[0].Value.Uint64())
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				w := httptest.NewRecorder()
				f.srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/get-online-features", strings.NewReader(body.String())))
				if w.Code != http.StatusOK {
					b.Errorf("status %d: %.200s", w.Code, w.Body)
				}
			})
		}
		wg.Wait()
		close(stop)
		<-sampled
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(clients*body.Len())/(1<<20), "body-MB")
}
