package serve_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
	"github.com/quiver-ml/quiver/internal/cuda/cudatest"
	"github.com/quiver-ml/quiver/internal/serve"
	"github.com/quiver-ml/quiver/model"
	"github.com/quiver-ml/quiver/model/onnx/onnxtest"
	"github.com/quiver-ml/quiver/store/online"
)

// predictClients is how many clients predict at once in BenchmarkPredict.
const predictClients = 64

// batchSizes are BenchmarkPredict's max_batch_size settings: 1 is batching
// off.
var batchSizes = []int{1, 16, 64}

// BenchmarkPredict drives POST /v2/models/{name}/infer over TCP with
// predictClients keep-alive clients, each sending one row of the
// 256→512→256→1 MLP at a time as fast as it is answered, for loadFor per
// batch size (1 ms of queueing at most): batching off (one row per model
// call), and up to 16 or 64 rows per call, in the same run; on the CPU, and
// on the GPU where there is one. It reports requests per second and the
// latency percentiles.
func BenchmarkPredict(b *testing.B) {
	const inputs = 256
	dir := b.TempDir()
	// The model's inputs must be a feature service of as many numbers: a
	// feature, then on-demand features that read the request's context.
	// /v2 requests carry the tensor itself: the service is not evaluated.
	svc := &strings.Builder{}
	svc.WriteString("\nfeature_services:\n  - name: mlp_in\n    features: [user_txn@1:txn_count_1h]\n    on_demand:\n")
	for i := range inputs - 1 {
		fmt.Fprintf(svc, "      - {name: x%d, expr: \"double(request.x%d)\"}\n", i, i)
	}
	base, err := os.ReadFile("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	defsPath := filepath.Join(dir, "definitions.yaml")
	writeFile(b, defsPath, string(base)+svc.String())
	defs, err := features.Load(defsPath)
	if err != nil {
		b.Fatal(err)
	}
	onnx := onnxtest.Marshal(b, onnxtest.MLP(7, inputs, 512, 256, 1))
	devices := []string{"cpu"}
	if cudatest.Available(b) {
		devices = append(devices, "gpu")
	}
	for _, device := range devices {
		for _, size := range batchSizes {
			writePredictModel(b, dir, onnx, device, size)
		}
	}
	models, err := model.Open(model.Config{Dir: filepath.Join(dir, "models"), Definitions: defs})
	if err != nil {
		b.Fatal(err)
	}
	defer models.Close()
	store, _ := startPebble(b, online.TableOf(defs.View("user_txn", 1)), nil)
	srv, err := serve.New(serve.Config{Definitions: defs, Store: store, Models: models})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var bodies [100]string
	for i := range bodies {
		row := make([]string, inputs)
		for j := range row {
			row[j] = fmt.Sprintf("%.4f", rng.NormFloat64())
		}
		bodies[i] = `{"inputs":[{"name":"input","shape":[1,` + fmt.Sprint(inputs) + `],"datatype":"FP32","data":[` + strings.Join(row, ",") + `]}]}`
	}
	addr := listen(b, srv)
	for _, device := range devices {
		for _, size := range batchSizes {
			b.Run(fmt.Sprintf("device=%s/max_batch_size=%d", device, size), func(b *testing.B) {
				reqs := requests(addr, fmt.Sprintf("/v2/models/mlp-%s-%d/infer", device, size), bodies[:])
				check(b, addr, reqs[0])
				b.ResetTimer()
				max, lat := closedLoop(b, addr, reqs, predictClients, loadFor)
				b.StopTimer()
				b.ReportMetric(max, "req/s")
				b.ReportMetric(ms(lat, 0.50), "p50-ms")
				b.ReportMetric(ms(lat, 0.99), "p99-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// writePredictModel writes BenchmarkPredict's model mlp-<device>-<size>.
func writePredictModel(b *testing.B, dir string, onnx []byte, device string, size int) {
	name := fmt.Sprintf("mlp-%s-%d", device, size)
	v := filepath.Join(dir, "models", name, "1")
	if err := os.MkdirAll(v, 0o755); err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(v, "model.onnx"), string(onnx))
	writeFile(b, filepath.Join(v, "model.yaml"), fmt.Sprintf(`format: onnx
artifact: model.onnx
inputs: {feature_service: mlp_in}
output: probability
batching: {max_batch_size: %d, max_queue_delay: 1ms, queue_capacity: 4096}
device: %s
`, size, device))
	writeFile(b, filepath.Join(dir, "models", name, "aliases.yaml"), "production: 1\n")
}
