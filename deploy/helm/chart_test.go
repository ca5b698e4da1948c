package helm_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/quiver-ml/quiver/features"
)

const (
	chartDir  = "quiver"
	repoRoot  = "../.."
	release   = "prod"
	namespace = "ml"
	fullname  = "prod-quiver"
)

// The values rendered: the chart's defaults and each values file of ci/ (a
// way to run Quiver that docs/deploy.md describes), some with --set
// overrides.
var valuesCases = []struct{ file, set string }{
	{"", ""}, // the defaults
	{"ci/redis-values.yaml", ""},
	{"ci/pebble-3-replicas-values.yaml", ""},
	{"ci/pebble-3-replicas-values.yaml", "serve.persistence.enabled=true,serve.persistence.storageClass=fast,serve.persistence.size=200Gi"},
	{"", "serve.persistence.enabled=true"},                      // with autoscaling
	{"", "serve.image=registry.example.com/ml/serve:v1-cuda13"}, // a GPU build
	{"ci/pebble-3-replicas-values.yaml", "ingest.drift.enabled=false"},
	{"ci/pebble-3-replicas-values.yaml", "serve.predictionLog=false"},
	{"ci/pebble-3-replicas-values.yaml", "ingest.drift.webhook.url=http://hooks:8080/retrain,ingest.drift.groupId=drift-b"},
	{"ci/s3-values.yaml", ""},
	{"ci/s3-values.yaml", "metrics.prometheusRule.enabled=false"},
	{"ci/s3-values.yaml", "networkPolicy.enabled=true"},
	{"ci/redis-values.yaml", "networkPolicy.enabled=true,networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring," +
		"networkPolicy.apiFrom[0].podSelector.matchLabels.role=payments,networkPolicy.apiFrom[1].ipBlock.cidr=10.0.0.0/8"},
	{"ci/s3-values.yaml", "backfill.tmpVolume.emptyDir.sizeLimit=64Gi"},
	{"ci/s3-values.yaml", "ingest.tmpVolume.ephemeral.volumeClaimTemplate.spec.resources.requests.storage=100Gi"},
	{"ci/s3-values.yaml", "backfill.datasets[0].featureService=,backfill.datasets[0].features={user_txn@1:txn_count_1h,user_txn@1:amount_sum_24h}"},
	{"ci/redis-values.yaml", "ingest.progressDeadlineSeconds=7200,serve.progressDeadlineSeconds=900"},
	{"ci/redis-values.yaml", "metrics.prometheusRule.serve5xxRatio=0.05"}, // a string: --set parses no decimals
	// As an umbrella chart's condition quiver.enabled passes it; durations of 0.
	{"ci/redis-values.yaml", "enabled=true,backfill.compact.grace=0,ingest.maxFutureSkew=0"},
	{"ci/redis-values.yaml", "kafka.tls.caSecret=kafka-ca,kafka.sasl.mechanism=scram-sha-512,kafka.sasl.secret=kafka-user," +
		"online.redis.tls.enabled=true,online.redis.authSecret=redis-auth"},
	{"ci/redis-values.yaml", "kafka.tls.clientSecret=kafka-client,online.redis.tls.caSecret=redis-ca,online.redis.tls.clientSecret=redis-client"},
	{"ci/redis-values.yaml", "online.redis.addr=redis:26379,online.redis.sentinelMaster=mymaster,online.redis.authSecret=redis-auth"},
	{"ci/s3-values.yaml", "kafka.tls.enabled=true,kafka.sasl.mechanism=PLAIN,kafka.sasl.secret=kafka-user,online.redis.tls.caSecret=redis-ca"},
}

func TestChart(t *testing.T) {
	flags := binaryFlags(t)
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range valuesCases {
		name := "defaults"
		if c.file != "" {
			name = filepath.Base(c.file)
		}
		if c.set != "" {
			name += " " + c.set
		}
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			if c.file != "" {
				if vals, err = chartutil.ReadValuesFile(filepath.Join(chartDir, c.file)); err != nil {
					t.Fatal(err)
				}
			}
			if c.set != "" {
				if err := strvals.ParseInto(c.set, vals); err != nil {
					t.Fatal(err)
				}
			}
			lintChart(t, vals)
			m := render(t, ch, vals)
			m.checkPods(t, flags)
			m.checkIngest(t)
			m.checkDrift(t)
			m.checkServe(t)
			m.checkBackfill(t)
			m.checkMonitoring(t)
			m.checkNetworkPolicies(t)
		})
	}
}

// TestRefusedValues: values that would deploy something broken fail the
// render with a message naming them.
func TestRefusedValues(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{
		// No volume every pod shares is mounted there: each pod would
		// keep an offline store of its own, or fail on a read-only root.
		"offline.url=file:///srv/offline": `offline.url "file:///srv/offline": want s3://bucket/prefix, or empty`,
		// The API server would refuse the CronJob at install.
		"fullnameOverride=ml-platform-feature-store-production-eu-west1": `CronJob name "ml-platform-feature-store-production-eu-west1-compact" has 53 characters`,
		// Every pod would exit at start.
		"kafka.sasl.mechanism=gssapi,kafka.sasl.secret=kafka-user": `kafka.sasl.mechanism "gssapi": want plain, scram-sha-256 or scram-sha-512`,
		"kafka.sasl.mechanism=plain":                               "kafka.sasl.secret is required with kafka.sasl.mechanism",
		// Serve would keep a claim it never reads.
		"online.store=redis,online.redis.addr=redis:6379,serve.persistence.enabled=true": "serve.persistence keeps a pebble replica's copy: it needs online.store pebble",
		// The alerts would never fire.
		"metrics.prometheusRule.enabled=true": "metrics.prometheusRule needs metrics.serviceMonitor",
		// backfill dataset would refuse both.
		"backfill.datasets[0].name=t,backfill.datasets[0].schedule=@daily,backfill.datasets[0].shards=1,backfill.datasets[0].spine=/datasets/s.csv," +
			"backfill.datasets[0].timestampColumn=ts,backfill.datasets[0].out=/datasets/t,backfill.datasets[0].volume.emptyDir.medium=," +
			"backfill.datasets[0].featureService=user_v1,backfill.datasets[0].features={user_txn@1:txn_count_1h}": "backfill.datasets t: set featureService or features, not both",
	} {
		vals := map[string]any{}
		if err := strvals.ParseInto(set, vals); err != nil {
			t.Fatal(err)
		}
		rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Render(ch, rv); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", set, err, want)
		}
	}
}

// TestSchemaRefuses: values.schema.json refuses, before anything renders,
// values the templates would silently ignore or render into a broken
// manifest: a misspelled key, a wrong type, a port or count out of range,
// a choice the chart does not have, an incomplete dataset. Each error names
// the key.
func TestSchemaRefuses(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Schema == nil {
		t.Fatalf("%s has no values.schema.json: helm checks no value's name or type", chartDir)
	}
	// A dataset as the templates want it, but for the key dropped.
	dataset := func(drop string) string {
		var kvs []string
		for _, kv := range []string{"name=training", "schedule=0 3 * * *", "shards=4", "spine=/datasets/spine.csv", "timestampColumn=ts",
			"featureService=fraud_v1", "out=/datasets/training", "volume.persistentVolumeClaim.claimName=datasets"} {
			if !strings.HasPrefix(kv, drop+"=") && !strings.HasPrefix(kv, drop+".") {
				kvs = append(kvs, "backfill.datasets[0]."+kv)
			}
		}
		return strings.Join(kvs, ",")
	}
	for _, c := range []struct {
		set string
		// asString parses set with --set-string: every value a string.
		asString bool
		want     string
	}{
		// Misspelled keys, at the top and below.
		{set: "logformat=json", want: "at '': additional properties 'logformat' not allowed"},
		{set: "serve.replica=3", want: "at '/serve': additional properties 'replica' not allowed"},
		{set: "kafka.tls.caSecrets=kafka-ca", want: "at '/kafka/tls': additional properties 'caSecrets' not allowed"},
		{set: "online.redis.tls.caSecrets=redis-ca", want: "at '/online/redis/tls': additional properties 'caSecrets' not allowed"},
		{set: "ingest.podDisruptionBudget.minAvailable=1", want: "at '/ingest/podDisruptionBudget': additional properties 'minAvailable' not allowed"},
		{set: "metrics.serviceMonitor.enable=true", want: "at '/metrics/serviceMonitor': additional properties 'enable' not allowed"},
		// Wrong types.
		{set: "ingest.replicas=two", want: "at '/ingest/replicas': got string, want integer"},
		{set: "ingest.replicas=3", asString: true, want: "at '/ingest/replicas': got string, want integer"},
		{set: "kafka.tls.enabled=yes", want: "at '/kafka/tls/enabled': got string, want boolean"},
		{set: "ingest.sessionTimeout=10", want: "at '/ingest/sessionTimeout': got number, want string"},
		{set: "serve.podAnnotations.prometheus\\.io/port=8080", want: "at '/serve/podAnnotations/prometheus.io~1port': got number, want string"},
		{set: "imagePullSecrets={regcred}", want: "at '/imagePullSecrets/0': got string, want object"},
		// Out of range.
		{set: "serve.port=70000", want: "at '/serve/port': maximum: got 70,000, want 65,535"},
		{set: "ingest.metricsPort=0", want: "at '/ingest/metricsPort': minimum: got 0, want 1"},
		{set: "metrics.prometheusRule.serve5xxRatio=5%", want: "at '/metrics/prometheusRule/serve5xxRatio': '5%' does not match pattern"},
		{set: "serve.persistence.size=lots", want: "at '/serve/persistence/size': 'lots' does not match pattern"},
		// Choices the chart does not have.
		{set: "online.store=memcached", want: "at '/online/store': value must be one of 'pebble', 'redis'"},
		{set: "logFormat=JSON", want: "at '/logFormat': value must be one of 'text', 'json'"},
		{set: "image.pullPolicy=always", want: "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"},
		{set: "serve.service.type=ExternalName", want: "at '/serve/service/type': value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'"},
		// Datasets: a key the templates require missing, a misspelled
		// one, no shards, and both feature service and features (backfill
		// dataset takes one).
		{set: dataset("volume"), want: "at '/backfill/datasets/0': missing property 'volume'"},
		{set: dataset("timestampColumn"), want: "at '/backfill/datasets/0': missing property 'timestampColumn'"},
		{set: dataset("") + ",backfill.datasets[0].memorylimit=1GiB", want: "at '/backfill/datasets/0': additional properties 'memorylimit' not allowed"},
		{set: dataset("") + ",backfill.datasets[0].shards=0", want: "at '/backfill/datasets/0/shards': minimum: got 0, want 1"},
	} {
		vals := map[string]any{}
		parse := strvals.ParseInto
		if c.asString {
			parse = strvals.ParseIntoString
		}
		if err := parse(c.set, vals); err != nil {
			t.Fatal(err)
		}
		_, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
		if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s (as string: %v): %v, want a schema error with %q", c.set, c.asString, err, c.want)
		}
	}
}

// TestSchemaDescribesValues: values.schema.json describes every key of
// values.yaml, down to the Kubernetes objects it leaves open, and no key
// that values.yaml lacks but those the templates read without a default.
func TestSchemaDescribesValues(t *testing.T) {
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	// Keys the templates read that values.yaml leaves unset.
	undocumented := map[string]bool{"global": true, "enabled": true}
	// resolve follows a "$ref" to the schema's definitions.
	resolve := func(s map[string]any) map[string]any {
		if ref, ok := s["$ref"].(string); ok {
			return schema["definitions"].(map[string]any)[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
		}
		return s
	}
	var walk func(path string, v map[string]any, s map[string]any)
	walk = func(path string, v map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			return // an object left open, such as resources
		}
		for key, val := range v {
			p, ok := props[key].(map[string]any)
			if !ok {
				t.Errorf("values.yaml %s%s: not in the schema", path, key)
				continue
			}
			if d, _ := p["description"].(string); d == "" {
				t.Errorf("schema %s%s: no description", path, key)
			}
			if m, ok := val.(map[string]any); ok {
				walk(path+key+".", m, resolve(p))
			}
		}
		for key := range props {
			if _, ok := v[key]; !ok && !undocumented[path+key] {
				t.Errorf("schema %s%s: not in values.yaml", path, key)
			}
		}
	}
	walk("", vals, schema)
}

// TestKubeVersion: helm installs the chart on Kubernetes 1.29 and later,
// as managed clusters report their versions too (helm checks the chart's
// kubeVersion against the server's GitVersion, as here), and refuses an
// older one, where the dataset Jobs' backoffLimitPerIndex is off or
// unknown and a failed shard would not be retried on its own.
func TestKubeVersion(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.KubeVersion == "" {
		t.Fatal("Chart.yaml has no kubeVersion: helm installs the chart on any Kubernetes")
	}
	for version, ok := range map[string]bool{
		"v1.28.15":            false,
		"v1.28.9-eks-036c24b": false,
		"v1.29.0":             true,
		"v1.29.3-eks-2f008fe": true,
		"v1.30.5-gke.1014001": true,
		"v1.33.1+k3s1":        true,
	} {
		if got := chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, version); got != ok {
			t.Errorf("kubeVersion %q admits Kubernetes %s: %v, want %v", ch.Metadata.KubeVersion, version, got, ok)
		}
	}
}

// TestRestartOnChange: a change of what a binary reads only when it starts
// restarts the Deployments that read it, and no other (ingest's restart is
// a pause of ingestion).
func TestRestartOnChange(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		before, after string
		restarted     []string
	}{
		// Serve reads --auth-tokens-file again when the kubelet updates
		// the Secret: new tokens restart nothing.
		{"serve.auth.tokens={token-a}", "serve.auth.tokens={token-b}", nil},
		{"", "definitions.files.more\\.yaml=project: example", []string{"ingest", "serve"}},
	} {
		pods := map[string]map[string]corev1.PodTemplateSpec{}
		for _, set := range []string{c.before, c.after} {
			vals := map[string]any{}
			if err := strvals.ParseInto(set, vals); err != nil {
				t.Fatal(err)
			}
			pods[set] = map[string]corev1.PodTemplateSpec{}
			for name, d := range render(t, ch, vals).deployments {
				pods[set][strings.TrimPrefix(name, fullname+"-")] = d.Spec.Template
			}
		}
		for name, before := range pods[c.before] {
			changed := !equality.Semantic.DeepEqual(before, pods[c.after][name])
			if want := slices.Contains(c.restarted, name); changed != want {
				t.Errorf("%s to %s: %s's pods restart: %v, want %v", c.before, c.after, name, changed, want)
			}
		}
	}
}

// TestDefaultDefinitions checks that the definitions the chart ships by
// default load.
func TestDefaultDefinitions(t *testing.T) {
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := vals.Table("definitions.files")
	if err != nil || len(files) == 0 {
		t.Fatalf("definitions.files: %v", err)
	}
	for name, src := range files {
		if _, err := features.Parse(name, []byte(src.(string))); err != nil {
			t.Error(err)
		}
	}
}

// TestStrictDecoding checks that decode refuses what the API server would:
// a manifest with a field the type does not have.
func TestStrictDecoding(t *testing.T) {
	doc := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetPrt: http}]}\n"
	if _, err := decode(doc); err == nil || !strings.Contains(err.Error(), "targetPrt") {
		t.Fatalf("decode of an unknown field: %v, want an error naming it", err)
	}
}

// lintChart runs helm lint with vals and fails on anything above info.
func lintChart(t *testing.T, vals map[string]any) {
	t.Helper()
	l := lint.All(chartDir, vals, namespace, false)
	for _, msg := range l.Messages {
		if msg.Severity > support.InfoSev {
			t.Errorf("lint: %v", msg)
		}
	}
}

// manifests are the objects a release renders, by kind.
type manifests struct {
	deployments  map[string]*appsv1.Deployment // with a StatefulSet's pods and replicas
	statefulSets map[string]*appsv1.StatefulSet
	cronJobs     map[string]*batchv1.CronJob
	services     map[string]*corev1.Service
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	netPols      []*networkingv1.NetworkPolicy
	serviceMons  []*monitoringv1.ServiceMonitor
	podMons      []*monitoringv1.PodMonitor
	rules        []*monitoringv1.PrometheusRule
	values       chartutil.Values
	configMaps   map[string]bool
	secrets      map[string]*corev1.Secret
	claimsByName map[string]bool
}

// render renders the chart as helm install would and decodes every
// manifest strictly into its Kubernetes type.
func render(t *testing.T, ch *chart.Chart, vals map[string]any) *manifests {
	t.Helper()
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{}, cronJobs: map[string]*batchv1.CronJob{},
		services: map[string]*corev1.Service{}, configMaps: map[string]bool{},
		secrets: map[string]*corev1.Secret{}, claimsByName: map[string]bool{},
	}
	m.values = rv["Values"].(chartutil.Values)
	for path, content := range files {
		if !strings.HasSuffix(path, ".yaml") {
			continue // NOTES.txt
		}
		for _, doc := range releaseutil.SplitManifests(content) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, err := decode(doc)
			if err != nil {
				t.Fatalf("%s: %v\n%s", path, err, doc)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *appsv1.StatefulSet:
				// Its pods, as the controller makes them (each claim a
				// volume), checked as a Deployment's are.
				m.statefulSets[o.Name] = o
				d := &appsv1.Deployment{ObjectMeta: o.ObjectMeta, Spec: appsv1.DeploymentSpec{Replicas: o.Spec.Replicas, Selector: o.Spec.Selector}}
				o.Spec.Template.DeepCopyInto(&d.Spec.Template)
				for _, claim := range o.Spec.VolumeClaimTemplates {
					d.Spec.Template.Spec.Volumes = append(d.Spec.Template.Spec.Volumes, corev1.Volume{Name: claim.Name,
						VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name + "-" + o.Name + "-0"}}})
				}
				m.deployments[o.Name] = d
			case *batchv1.CronJob:
				m.cronJobs[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *networkingv1.NetworkPolicy:
				m.netPols = append(m.netPols, o)
			case *monitoringv1.ServiceMonitor:
				m.serviceMons = append(m.serviceMons, o)
			case *monitoringv1.PodMonitor:
				m.podMons = append(m.podMons, o)
			case *monitoringv1.PrometheusRule:
				m.rules = append(m.rules, o)
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = true
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *corev1.PersistentVolumeClaim:
				m.claimsByName[o.Name] = true
			case *corev1.ServiceAccount:
			default:
				t.Errorf("%s: unexpected %T", path, obj)
			}
		}
	}
	return m
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// decode decodes one YAML manifest into its API type; unknown and
// duplicate fields are errors.
func decode(doc string) (runtime.Object, error) {
	obj, _, err := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer().Decode([]byte(doc), nil, nil)
	return obj, err
}

// pod is a workload's pod template, named for messages.
type pod struct {
	name string
	spec corev1.PodTemplateSpec
}

func (m *manifests) pods() []pod {
	var pods []pod
	for _, d := range m.deployments {
		pods = append(pods, pod{"deployment " + d.Name, d.Spec.Template})
	}
	for _, c := range m.cronJobs {
		pods = append(pods, pod{"cronjob " + c.Name, c.Spec.JobTemplate.Spec.Template})
	}
	return pods
}

// checkPods checks what every pod shares: no root, a read-only root
// filesystem with writable volumes where the binaries write, resource
// requests, and flags and environment variables the binaries have.
func (m *manifests) checkPods(t *testing.T, flags map[string]map[string]bool) {
	for _, p := range m.pods() {
		spec := p.spec.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
			t.Errorf("%s: pod security context %+v, want runAsNonRoot as 65532", p.name, psc)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: the service account token is mounted; Quiver does not call the API server", p.name)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			if n := sourceCount(t, v.VolumeSource); n != 1 {
				t.Errorf("%s: volume %s has %d sources, want one: the API server refuses it", p.name, v.Name, n)
			}
			if cm := v.ConfigMap; cm != nil && !m.configMaps[cm.Name] && cm.Name != m.values["definitions"].(map[string]any)["existingConfigMap"] {
				t.Errorf("%s: volume %s: ConfigMap %s is neither rendered nor named in values", p.name, v.Name, cm.Name)
			}
			if pvc := v.PersistentVolumeClaim; pvc != nil && v.Name == "offline" && !m.claimsByName[pvc.ClaimName] {
				if pvc.ClaimName != m.values["offline"].(map[string]any)["persistence"].(map[string]any)["existingClaim"] {
					t.Errorf("%s: offline claim %s is neither rendered nor named in values", p.name, pvc.ClaimName)
				}
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			where := p.name + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s: security context %+v, want a read-only root, no escalation, no capabilities", where, sc)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: no CPU or memory request", where)
			}
			mounts := map[string]string{}
			for _, vm := range c.VolumeMounts {
				if _, ok := volumes[vm.Name]; !ok {
					t.Errorf("%s: mount %s of no volume", where, vm.Name)
				}
				mounts[vm.MountPath] = vm.Name
			}
			if _, ok := mounts["/tmp"]; !ok {
				t.Errorf("%s: /tmp is not writable", where)
			}
			bin, ok := quiverBinary(c)
			if !ok {
				continue
			}
			known := flags[bin]
			if known == nil {
				t.Errorf("%s: %s is not a Quiver binary or subcommand", where, bin)
				continue
			}
			args := flagArgs(t, c)
			for name := range args {
				if !known[name] {
					t.Errorf("%s: %s has no flag --%s", where, bin, name)
				}
			}
			for _, e := range c.Env {
				if slices.Contains([]string{"QUIVER_KAFKA_SASL_PASSWORD", "QUIVER_REDIS_PASSWORD", "QUIVER_REDIS_SENTINEL_PASSWORD"}, e.Name) {
					continue // no flag: a password is read from the environment only
				}
				if f, ok := strings.CutPrefix(e.Name, "QUIVER_"); ok && !known[strings.ReplaceAll(strings.ToLower(f), "_", "-")] {
					t.Errorf("%s: %s has no flag for %s", where, bin, e.Name)
				}
			}
			// The paths the flags name lie on volumes: the writable ones
			// where the binary writes.
			for flag, want := range map[string]string{"definitions": "definitions", "data-dir": "data"} {
				if got := mounts[args[flag]]; got != want {
					t.Errorf("%s: --%s=%s is on volume %q, want %q", where, flag, args[flag], got, want)
				}
			}
			if off := args["offline"]; strings.HasPrefix(off, "file://") && mounts[strings.TrimPrefix(off, "file://")] != "offline" {
				t.Errorf("%s: --offline=%s is not on the offline volume", where, off)
			}
			m.checkStores(t, where, spec, c, args)
		}
	}
}

// checkStores checks the online and offline store flags against the values.
func (m *manifests) checkStores(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container, args map[string]string) {
	online := m.values["online"].(map[string]any)
	if args["online"] != online["store"] {
		t.Errorf("%s: --online=%s, values say %v", where, args["online"], online["store"])
	}
	if redisAddr := online["redis"].(map[string]any)["addr"]; args["online"] == "redis" && args["redis-addr"] != redisAddr {
		t.Errorf("%s: --redis-addr=%s, values say %v", where, args["redis-addr"], redisAddr)
	}
	offline := m.values["offline"].(map[string]any)
	url, _ := offline["url"].(string)
	if url == "" {
		url = "file:///quiver/offline"
	}
	if args["offline"] != url {
		t.Errorf("%s: --offline=%s, want %s", where, args["offline"], url)
	}
	if secret := offline["s3"].(map[string]any)["credentialsSecret"]; secret != "" {
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != secret {
			t.Errorf("%s: envFrom %+v, want the object store's Secret %v", where, c.EnvFrom, secret)
		}
	}
	kafka := m.values["kafka"].(map[string]any)
	checkTLS(t, where, spec, c, args, "kafka", kafka["tls"].(map[string]any))
	redisTLS := map[string]any{"enabled": false, "caSecret": ""} // none with pebble
	if args["online"] == "redis" {
		redisTLS = online["redis"].(map[string]any)["tls"].(map[string]any)
	}
	checkTLS(t, where, spec, c, args, "redis", redisTLS)
	env := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = e.ValueFrom.SecretKeyRef
		}
	}
	fromSecret := func(name, secret, key string) {
		t.Helper()
		ref := env[name]
		if got := ""; secret != "" && (ref == nil || ref.Name != secret || ref.Key != key) || secret == "" && ref != nil {
			if ref != nil {
				got = ref.Name + "/" + ref.Key
			}
			t.Errorf("%s: %s from Secret key %q, want %q", where, name, got, strings.Trim(secret+"/"+key, "/"))
		}
	}
	sasl := kafka["sasl"].(map[string]any)
	if args["kafka-sasl"] != sasl["mechanism"] {
		t.Errorf("%s: --kafka-sasl=%s, values say %v", where, args["kafka-sasl"], sasl["mechanism"])
	}
	saslSecret := ""
	if sasl["mechanism"] != "" {
		saslSecret = sasl["secret"].(string)
	}
	fromSecret("QUIVER_KAFKA_SASL_USER", saslSecret, "username")
	fromSecret("QUIVER_KAFKA_SASL_PASSWORD", saslSecret, "password")
	redisSecret := ""
	if args["online"] == "redis" {
		redisSecret = online["redis"].(map[string]any)["authSecret"].(string)
	}
	fromSecret("QUIVER_REDIS_USER", redisSecret, "username")
	fromSecret("QUIVER_REDIS_PASSWORD", redisSecret, "password")
	sentinelSecret := ""
	if master := online["redis"].(map[string]any)["sentinelMaster"]; args["online"] == "redis" && args["redis-sentinel-master"] != master {
		t.Errorf("%s: --redis-sentinel-master=%s, values say %v", where, args["redis-sentinel-master"], master)
	} else if master != "" {
		sentinelSecret = redisSecret
	}
	fromSecret("QUIVER_REDIS_SENTINEL_PASSWORD", sentinelSecret, "sentinelPassword")
	// Behind Sentinels, Redis itself may have no password.
	if ref := env["QUIVER_REDIS_PASSWORD"]; ref != nil {
		if optional := ref.Optional != nil && *ref.Optional; optional != (sentinelSecret != "") {
			t.Errorf("%s: QUIVER_REDIS_PASSWORD optional %v, want it optional only with sentinelMaster", where, optional)
		}
	}
}

// checkTLS checks a container's TLS flags for kafka or redis against the
// values tls: each file they name is the key of the values' Secret.
func checkTLS(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container, args map[string]string, name string, tls map[string]any) {
	t.Helper()
	caSecret, _ := tls["caSecret"].(string)
	clientSecret, _ := tls["clientSecret"].(string)
	if on := args[name+"-tls"] == "true"; on != (tls["enabled"] == true && caSecret == "" && clientSecret == "") {
		t.Errorf("%s: --%s-tls=%v, values say %v", where, name, on, tls)
	}
	for flag, want := range map[string]struct{ secret, key string }{
		"ca-file": {caSecret, "ca.crt"}, "cert-file": {clientSecret, "tls.crt"}, "key-file": {clientSecret, "tls.key"},
	} {
		file := args[name+"-tls-"+flag]
		if want.secret == "" {
			if file != "" {
				t.Errorf("%s: --%s-tls-%s=%s, values name no Secret", where, name, flag, file)
			}
			continue
		}
		if got := secretKeyAt(spec, c, file); got != want.secret+"/"+want.key {
			t.Errorf("%s: --%s-tls-%s=%q is %q, want Secret key %s/%s", where, name, flag, file, got, want.secret, want.key)
		}
	}
}

// secretKeyAt returns the Secret and key, "secret/key", that file is in
// container c, or "" if none.
func secretKeyAt(spec corev1.PodSpec, c corev1.Container, file string) string {
	mount := mountAt(c, filepath.Dir(file))
	if mount == nil {
		return ""
	}
	v := volume(spec, mount.Name)
	if v == nil || v.Projected == nil {
		return ""
	}
	for _, src := range v.Projected.Sources {
		if src.Secret == nil {
			continue
		}
		for _, item := range src.Secret.Items {
			if item.Path == filepath.Base(file) {
				return src.Secret.Name + "/" + item.Key
			}
		}
	}
	return ""
}

// checkAvailability checks that one PodDisruptionBudget selects d's pods, as its
// values v say, and that the pods spread across nodes by default.
func (m *manifests) checkAvailability(t *testing.T, d *appsv1.Deployment, v map[string]any) {
	t.Helper()
	var got []*policyv1.PodDisruptionBudget
	for _, p := range m.pdbs {
		if selects(p.Spec.Selector.MatchLabels, d) {
			got = append(got, p)
		}
	}
	if spread := d.Spec.Template.Spec.TopologySpreadConstraints; len(v["topologySpreadConstraints"].([]any)) == 0 &&
		(len(spread) != 1 || spread[0].TopologyKey != "kubernetes.io/hostname" || spread[0].LabelSelector == nil || !selects(spread[0].LabelSelector.MatchLabels, d)) {
		t.Errorf("%s: topology spread %+v, want its pods across nodes", d.Name, spread)
	}
	want := v["podDisruptionBudget"].(map[string]any)
	switch {
	case want["enabled"] != true:
		if len(got) != 0 {
			t.Errorf("%s: %d PodDisruptionBudgets, values enable none", d.Name, len(got))
		}
	case len(got) != 1 || got[0].Spec.MaxUnavailable == nil || float64(got[0].Spec.MaxUnavailable.IntValue()) != number(t, want["maxUnavailable"]):
		t.Errorf("%s: PodDisruptionBudgets %v, want one of maxUnavailable %v", d.Name, got, want["maxUnavailable"])
	}
}

// checkIngest checks that ingest's replicas form one consumer group and
// are probed.
func (m *manifests) checkIngest(t *testing.T) {
	d := m.deployments[fullname+"-ingest"]
	if d == nil {
		t.Fatal("no ingest Deployment")
	}
	v := m.values["ingest"].(map[string]any)
	if d.Spec.Replicas == nil || float64(*d.Spec.Replicas) != v["replicas"] {
		t.Errorf("ingest replicas %v, values say %v", d.Spec.Replicas, v["replicas"])
	}
	m.checkAvailability(t, d, v)
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("ingest strategy %s: a rolling update mixes old and new definitions in the group", d.Spec.Strategy.Type)
	}
	// A replica catching up from the event log and changelogs is not ready
	// for longer than the 600 s a rollout may go without progress by
	// default, and kubectl rollout status would fail a healthy rollout.
	if p := d.Spec.ProgressDeadlineSeconds; p == nil || float64(*p) != number(t, v["progressDeadlineSeconds"]) || *p <= 600 {
		t.Errorf("ingest progressDeadlineSeconds %s, want ingest.progressDeadlineSeconds %v, above the default 600", orNone(p), v["progressDeadlineSeconds"])
	}
	c := d.Spec.Template.Spec.Containers[0]
	args := flagArgs(t, c)
	// /tmp, where a new view version's catch-up spills events, is the
	// values' volume.
	tmpVals, err := m.values.Table("ingest.tmpVolume")
	if err != nil {
		t.Fatal(err)
	}
	if vol := volume(d.Spec.Template.Spec, mountOf(c, "/tmp")); vol == nil || !equality.Semantic.DeepEqual(vol.VolumeSource, volumeSource(t, tmpVals)) {
		t.Errorf("ingest: /tmp is on %+v, want ingest.tmpVolume %v", vol, tmpVals)
	}
	// One group for every replica: the flag is the same in each pod, and
	// not made of anything a pod has of its own.
	if group := args["group-id"]; group != v["groupId"] || strings.Contains(group, "$(") {
		t.Errorf("ingest --group-id=%q, want the shared %v", group, v["groupId"])
	}
	if id, ok := args["instance-id"]; ok != v["staticMembership"].(bool) || ok && id != "$(POD_NAME)" {
		t.Errorf("ingest --instance-id=%q (set: %v), staticMembership is %v", id, ok, v["staticMembership"])
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Error("ingest: no POD_NAME from the downward API")
	}
	port := containerPort(t, c, "metrics")
	if args["metrics-addr"] != fmt.Sprintf(":%d", port) {
		t.Errorf("ingest --metrics-addr=%s, container port %d", args["metrics-addr"], port)
	}
	for probe, path := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("ingest probe %+v, want GET %s on the metrics port", probe, path)
		}
	}
	if s := m.services[fullname+"-ingest"]; s == nil || !selects(s.Spec.Selector, d) {
		t.Error("no metrics Service selects the ingest pods")
	}
}

// checkDrift checks ingest's drift detectors: on when serve has models and
// logs its predictions, unless ingest.drift turns them off; reading serve's
// model repository, read-only, at the same path; in a consumer group of
// their own; posting to the webhook with its key from a Secret file.
func (m *manifests) checkDrift(t *testing.T) {
	ingest, serve := m.deployments[fullname+"-ingest"], m.deployments[fullname+"-serve"]
	if ingest == nil || serve == nil {
		t.Fatal("no ingest or serve Deployment")
	}
	spec := ingest.Spec.Template.Spec
	ic, sc := spec.Containers[0], serve.Spec.Template.Spec.Containers[0]
	iargs, sargs := flagArgs(t, ic), flagArgs(t, sc)
	_, models := sargs["models"]
	want := models && m.value(t, "serve.predictionLog") == true && m.value(t, "ingest.drift.enabled") == true
	dir, on := iargs["models"]
	if on != want {
		t.Fatalf("ingest --models set: %v, want %v (serve --models set: %v, serve.predictionLog %v, ingest.drift.enabled %v)",
			on, want, models, m.value(t, "serve.predictionLog"), m.value(t, "ingest.drift.enabled"))
	}
	if !on {
		for _, f := range []string{"drift-group-id", "retrain-webhook", "retrain-webhook-secret-file"} {
			if _, ok := iargs[f]; ok {
				t.Errorf("ingest --%s without --models", f)
			}
		}
		if volume(spec, "models") != nil || volume(spec, "webhook") != nil || len(spec.InitContainers) > 0 || len(spec.Containers) > 1 {
			t.Error("ingest without drift detection has the models, a webhook key or containers besides ingest")
		}
		return
	}

	// The repository serve reads, at the same path, read-only.
	if dir != sargs["models"] {
		t.Errorf("ingest --models=%s, serve --models=%s", dir, sargs["models"])
	}
	for _, p := range []struct {
		name string
		spec corev1.PodSpec
		c    corev1.Container
	}{{"ingest", spec, ic}, {"serve", serve.Spec.Template.Spec, sc}} {
		vm := mountAt(p.c, dir)
		if vm == nil || !vm.ReadOnly {
			t.Errorf("%s: mount of the models at %s %+v, want a read-only one", p.name, dir, vm)
		}
	}
	iv, sv := volume(spec, mountOf(ic, dir)), volume(serve.Spec.Template.Spec, mountOf(sc, dir))
	if iv == nil || sv == nil || !equality.Semantic.DeepEqual(iv.VolumeSource, sv.VolumeSource) {
		t.Fatalf("ingest's models volume %+v, serve's %+v: want the same", iv, sv)
	}
	// A volume the pod fills: the same copies from the object store as
	// serve's, the first before ingest starts.
	if iv.EmptyDir != nil {
		url := m.value(t, "serve.models.objectStore.url")
		iw, sw := modelWriters(spec, iv.Name), modelWriters(serve.Spec.Template.Spec, sv.Name)
		if !slices.Equal(iw, sw) || len(iw) == 0 || !strings.HasPrefix(iw[0], "init ") || !strings.Contains(iw[0], "MODELS_URL="+url.(string)+" ") {
			t.Errorf("ingest's models are written by %q, serve's by %q: want the same, first an init container copying %v", iw, sw, url)
		}
	}

	// A consumer group of their own.
	if g := iargs["drift-group-id"]; g != m.value(t, "ingest.drift.groupId") || g == iargs["group-id"] {
		t.Errorf("ingest --drift-group-id=%q, want ingest.drift.groupId %v, apart from --group-id", g, m.value(t, "ingest.drift.groupId"))
	}

	// The webhook, and its signing key as a file from the Secret.
	url, secret := m.value(t, "ingest.drift.webhook.url"), m.value(t, "ingest.drift.webhook.existingSecret")
	if got, ok := iargs["retrain-webhook"]; ok != (url != "") || got != url && ok {
		t.Errorf("ingest --retrain-webhook=%q (set: %v), values say %q", got, ok, url)
	}
	file, ok := iargs["retrain-webhook-secret-file"]
	if ok != (secret != "") {
		t.Fatalf("ingest --retrain-webhook-secret-file=%q (set: %v), ingest.drift.webhook.existingSecret %q", file, ok, secret)
	}
	if ok {
		vm := mountAt(ic, filepath.Dir(file))
		vol := volume(spec, mountOf(ic, filepath.Dir(file)))
		if vm == nil || !vm.ReadOnly || vol == nil || vol.Secret == nil || vol.Secret.SecretName != secret ||
			!slices.Contains(vol.Secret.Items, corev1.KeyToPath{Key: m.value(t, "ingest.drift.webhook.secretKey").(string), Path: filepath.Base(file)}) {
			t.Errorf("--retrain-webhook-secret-file=%s: mount %+v of %+v, want the key %v of Secret %v, read-only",
				file, vm, vol, m.value(t, "ingest.drift.webhook.secretKey"), secret)
		}
	}
}

// modelWriters describes the containers of a pod that write its models
// volume: "init " for an init container, its name, arguments and
// MODELS_URL.
func modelWriters(spec corev1.PodSpec, name string) []string {
	var ws []string
	for i, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == name && !vm.ReadOnly }) {
			continue
		}
		w := c.Name + " " + strings.Join(c.Args, " ")
		if i < len(spec.InitContainers) {
			w = "init " + w
		}
		for _, e := range c.Env {
			if e.Name == "MODELS_URL" {
				w += " MODELS_URL=" + e.Value + " "
			}
		}
		ws = append(ws, w)
	}
	return ws
}

// number returns a number of the values: a float64 from a values file, an
// int64 from --set.
func number(t *testing.T, v any) float64 {
	t.Helper()
	switch n := v.(type) {
	case float64:
		return n
	case int64:
		return float64(n)
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

// orNone formats an optional field: its value, or "none".
func orNone[T any](p *T) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

// sourceCount counts the sources a volume names.
func sourceCount(t *testing.T, v corev1.VolumeSource) int {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	return len(fields)
}

// volumeSource decodes a volume source of the values strictly, as the
// chart renders it: another source than emptyDir replaces the default
// emptyDir the values merge keeps beside it.
func volumeSource(t *testing.T, v any) corev1.VolumeSource {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var vs corev1.VolumeSource
	if err := dec.Decode(&vs); err != nil {
		t.Fatalf("volume source %s: %v", b, err)
	}
	if vs.EmptyDir != nil && sourceCount(t, vs) > 1 {
		vs.EmptyDir = nil
	}
	return vs
}

// value returns the rendered value at a dotted path, such as
// "ingest.drift.enabled".
func (m *manifests) value(t *testing.T, path string) any {
	t.Helper()
	v, err := m.values.PathValue(path)
	if err != nil {
		t.Fatalf("values %s: %v", path, err)
	}
	return v
}

// checkServe checks serve's probes, Service, autoscaler and disruption budget.
func (m *manifests) checkServe(t *testing.T) {
	name := fullname + "-serve"
	d := m.deployments[name]
	if d == nil {
		t.Fatal("no serve Deployment")
	}
	v := m.values["serve"].(map[string]any)
	c := d.Spec.Template.Spec.Containers[0]
	if want, _ := v["image"].(string); want != "" && c.Image != want {
		t.Errorf("serve image %s, want %s", c.Image, want)
	}
	args := flagArgs(t, c)
	port := containerPort(t, c, "http")
	if args["listen"] != fmt.Sprintf(":%d", port) {
		t.Errorf("serve --listen=%s, container port %d", args["listen"], port)
	}
	for probe, path := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz", c.StartupProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("serve probe %+v, want GET %s on the http port", probe, path)
		}
	}
	if s := m.services[name]; s == nil || !selects(s.Spec.Selector, d) || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("serve Service %+v, want one selecting the serve pods' http port", s)
	}
	kind := "Deployment"
	if sts := m.statefulSets[name]; sts != nil {
		kind = "StatefulSet"
		m.checkServeClaims(t, sts, v)
	} else if p := d.Spec.ProgressDeadlineSeconds; p == nil || float64(*p) != number(t, v["progressDeadlineSeconds"]) || float64(*p) <= number(t, v["startupTimeoutSeconds"]) {
		// A new replica may take its startup time, then read the
		// changelogs, before the rolling update progresses.
		t.Errorf("serve progressDeadlineSeconds %s, want serve.progressDeadlineSeconds %v, above startupTimeoutSeconds %v",
			orNone(p), v["progressDeadlineSeconds"], v["startupTimeoutSeconds"])
	}
	autoscaling := v["autoscaling"].(map[string]any)["enabled"].(bool)
	if autoscaling != (len(m.hpas) == 1) || autoscaling != (d.Spec.Replicas == nil) {
		t.Errorf("autoscaling %v: %d HPAs, replicas %v", autoscaling, len(m.hpas), d.Spec.Replicas)
	}
	if !autoscaling && float64(*d.Spec.Replicas) != v["replicas"] {
		t.Errorf("serve replicas %d, values say %v", *d.Spec.Replicas, v["replicas"])
	}
	for _, h := range m.hpas {
		if ref := h.Spec.ScaleTargetRef; ref.Kind != kind || ref.Name != name || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA %+v, want serve's %s from at least 2 replicas", h.Spec, kind)
		}
	}
	m.checkAvailability(t, d, v)
	// A stopping replica drains (its /readyz fails while it serves), then
	// finishes its requests (10 s) before the kubelet's SIGKILL.
	drain, err := time.ParseDuration(args["drain-delay"])
	if grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds; err != nil || drain <= 0 || grace == nil || time.Duration(*grace)*time.Second < drain+10*time.Second {
		t.Errorf("serve --drain-delay=%s (%v) with terminationGracePeriodSeconds %v: want a drain and 10 s more", args["drain-delay"], err, grace)
	}
	// Tokens: a file from a Secret the chart renders or the values name.
	auth := v["auth"].(map[string]any)
	if file, ok := args["auth-tokens-file"]; ok != (auth["existingSecret"] != "" || len(auth["tokens"].([]any)) > 0) {
		t.Errorf("serve --auth-tokens-file=%q with auth values %v", file, auth)
	} else if ok {
		vol := volume(d.Spec.Template.Spec, mountOf(c, filepath.Dir(file)))
		if vol == nil || vol.Secret == nil {
			t.Fatalf("--auth-tokens-file=%s is not on a Secret volume", file)
		}
		if s := m.secrets[vol.Secret.SecretName]; s != nil && strings.Fields(s.StringData["tokens"])[0] != auth["tokens"].([]any)[0] {
			t.Errorf("auth Secret %v, values say %v", s.StringData, auth["tokens"])
		} else if s == nil && vol.Secret.SecretName != auth["existingSecret"] {
			t.Errorf("auth Secret %s is neither rendered nor named in values", vol.Secret.SecretName)
		}
	}
	if dir, ok := args["models"]; ok && volume(d.Spec.Template.Spec, mountOf(c, dir)) == nil {
		t.Errorf("--models=%s is not on a volume", dir)
	}
}

// checkNetworkPolicies checks that, with networkPolicy.enabled, one policy
// selects each pod and admits each of its ports from the values' peers
// (serve's API from apiFrom, metrics from metricsFrom), and none without.
func (m *manifests) checkNetworkPolicies(t *testing.T) {
	v := m.values["networkPolicy"].(map[string]any)
	if v["enabled"] != true {
		if len(m.netPols) > 0 {
			t.Errorf("%d NetworkPolicies, values enable none", len(m.netPols))
		}
		return
	}
	from := map[string]string{"http": mustJSONString(t, v["apiFrom"]), "metrics": mustJSONString(t, v["metricsFrom"])}
	for _, p := range m.pods() {
		var selecting []*networkingv1.NetworkPolicy
		for _, np := range m.netPols {
			if labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(p.spec.Labels)) {
				selecting = append(selecting, np)
			}
		}
		if len(selecting) != 1 {
			t.Errorf("%s: %d NetworkPolicies select its pods, want one", p.name, len(selecting))
			continue
		}
		for _, port := range p.spec.Spec.Containers[0].Ports {
			admitted := false
			for _, rule := range selecting[0].Spec.Ingress {
				peers := "[]"
				if len(rule.From) > 0 {
					peers = mustJSONString(t, rule.From)
				}
				if slices.ContainsFunc(rule.Ports, func(np networkingv1.NetworkPolicyPort) bool { return np.Port.String() == port.Name }) && peers == from[port.Name] {
					admitted = true
				}
			}
			if !admitted {
				t.Errorf("%s: NetworkPolicy %s does not admit port %s from %s", p.name, selecting[0].Name, port.Name, from[port.Name])
			}
		}
	}
}

// mustJSONString is v in JSON, for comparing values with decoded objects.
func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkServeClaims checks serve as a StatefulSet (serve.persistence): a
// claim per replica of the values' size and class holds --data-dir, and
// replicas start together.
func (m *manifests) checkServeClaims(t *testing.T, sts *appsv1.StatefulSet, v map[string]any) {
	t.Helper()
	p := v["persistence"].(map[string]any)
	if p["enabled"] != true {
		t.Errorf("serve is a StatefulSet, but serve.persistence is off")
	}
	claims := sts.Spec.VolumeClaimTemplates
	if len(claims) != 1 || claims[0].Name != "data" {
		t.Fatalf("serve claim templates %+v, want one named data", claims)
	}
	spec := claims[0].Spec
	if size := spec.Resources.Requests[corev1.ResourceStorage]; size.String() != fmt.Sprint(p["size"]) || orNone(spec.StorageClassName) != cmp.Or(p["storageClass"].(string), "none") {
		t.Errorf("serve claims of %s in class %s, values say %v in %q", size.String(), orNone(spec.StorageClassName), p["size"], p["storageClass"])
	}
	if sts.Spec.ServiceName != sts.Name || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("serve StatefulSet serviceName %q, pod management %q: want its Service, Parallel", sts.Spec.ServiceName, sts.Spec.PodManagementPolicy)
	}
	if volume(sts.Spec.Template.Spec, "data") != nil {
		t.Error("serve StatefulSet has a data volume beside its claim")
	}
}

// checkBackfill checks the compaction and sharded dataset CronJobs.
func (m *manifests) checkBackfill(t *testing.T) {
	tmpVals, err := m.values.Table("backfill.tmpVolume")
	if err != nil {
		t.Fatal(err)
	}
	tmp := volumeSource(t, tmpVals)
	for _, cj := range m.cronJobs {
		spec := cj.Spec.JobTemplate.Spec.Template.Spec
		c := spec.Containers[0]
		if port := containerPort(t, c, "metrics"); flagArgs(t, c)["metrics-addr"] != fmt.Sprintf(":%d", port) {
			t.Errorf("%s: --metrics-addr=%s, container port %d", cj.Name, flagArgs(t, c)["metrics-addr"], port)
		}
		// /tmp, where dataset and replay spill events, is the values'
		// volume; an emptyDir has a size, so that a spill cannot take all
		// of the node's disk.
		vol := volume(spec, mountOf(c, "/tmp"))
		if vol == nil || !equality.Semantic.DeepEqual(vol.VolumeSource, tmp) {
			got, _ := json.Marshal(vol)
			want, _ := json.Marshal(tmp)
			t.Errorf("%s: /tmp is on %s, want backfill.tmpVolume %s", cj.Name, got, want)
		} else if vol.EmptyDir != nil && vol.EmptyDir.SizeLimit == nil {
			t.Errorf("%s: /tmp is an emptyDir of no size limit", cj.Name)
		}
	}
	if c := m.cronJobs[fullname+"-compact"]; c == nil || c.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent ||
		c.Spec.JobTemplate.Spec.ActiveDeadlineSeconds == nil || *c.Spec.JobTemplate.Spec.ActiveDeadlineSeconds <= 0 {
		t.Error("no compaction CronJob that forbids concurrent runs and stops a hung one")
	}
	for _, d := range m.values["backfill"].(map[string]any)["datasets"].([]any) {
		d := d.(map[string]any)
		cj := m.cronJobs[fullname+"-dataset-"+d["name"].(string)]
		if cj == nil {
			t.Errorf("no CronJob for dataset %v", d["name"])
			continue
		}
		job := cj.Spec.JobTemplate.Spec
		n := int32(d["shards"].(float64))
		if job.CompletionMode == nil || *job.CompletionMode != batchv1.IndexedCompletion || *job.Completions != n || *job.Parallelism != n {
			t.Errorf("dataset %v: job %+v, want %d indexed completions in parallel", d["name"], job, n)
		}
		c := job.Template.Spec.Containers[0]
		args := flagArgs(t, c)
		if args["shard"] != fmt.Sprintf("$(SHARD_INDEX)/%d", n) || !strings.Contains(args["out"], "$(SHARD_INDEX)") {
			t.Errorf("dataset %v: --shard=%s --out=%s, want shard i of %d to its own file", d["name"], args["shard"], args["out"], n)
		}
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "SHARD_INDEX" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
				e.ValueFrom.FieldRef.FieldPath == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
		}) {
			t.Errorf("dataset %v: SHARD_INDEX is not the job's completion index", d["name"])
		}
		// The shards of a run read the log to one set of marks, and the
		// next run to its own, a Job made again under its name
		// included.
		fromLabel := func(name, label string) bool {
			return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
					e.ValueFrom.FieldRef.FieldPath == "metadata.labels['"+label+"']"
			})
		}
		if args["log-marks"] != d["out"].(string)+"/.log-marks-$(JOB_NAME)-$(JOB_UID).json" ||
			!fromLabel("JOB_NAME", "batch.kubernetes.io/job-name") || !fromLabel("JOB_UID", "batch.kubernetes.io/controller-uid") {
			t.Errorf("dataset %v: --log-marks=%s, want a file in %v named after the Job and its UID (from the pod's labels)", d["name"], args["log-marks"], d["out"])
		}
	}
}

// checkMonitoring checks that ServiceMonitors select the metrics Services'
// ports and that alert rules name metrics the code exports.
func (m *manifests) checkMonitoring(t *testing.T) {
	// A ServiceMonitor's port is a Service's, whose target is the port
	// where the binary serves its metrics (--metrics-addr).
	for _, sm := range m.serviceMons {
		found := false
		for _, s := range m.services {
			i := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == sm.Spec.Endpoints[0].Port })
			if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) || i < 0 {
				continue
			}
			found = true
			for _, d := range m.deployments {
				if c := d.Spec.Template.Spec.Containers[0]; selects(s.Spec.Selector, d) &&
					flagArgs(t, c)["metrics-addr"] != fmt.Sprintf(":%d", containerPort(t, c, s.Spec.Ports[i].TargetPort.String())) {
					t.Errorf("ServiceMonitor %s scrapes port %s of %s, not its --metrics-addr=%s", sm.Name, s.Spec.Ports[i].TargetPort.String(), d.Name, flagArgs(t, c)["metrics-addr"])
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no Service port %s", sm.Name, sm.Spec.Endpoints[0].Port)
		}
	}
	// A PodMonitor for the backfill jobs beside the ServiceMonitors, on
	// their metrics port.
	if want := len(m.serviceMons) > 0; (len(m.podMons) == 1) != want || len(m.podMons) > 1 {
		t.Errorf("%d PodMonitors, want one if there are ServiceMonitors (%d)", len(m.podMons), len(m.serviceMons))
	}
	for _, pm := range m.podMons {
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil {
			t.Fatalf("PodMonitor %s: %v", pm.Name, err)
		}
		port := pm.Spec.PodMetricsEndpoints[0].Port
		for _, cj := range m.cronJobs {
			pod := cj.Spec.JobTemplate.Spec.Template
			if !sel.Matches(labels.Set(pod.Labels)) || port == nil || containerPort(t, pod.Spec.Containers[0], *port) == 0 {
				t.Errorf("PodMonitor %s does not scrape the pods of %s", pm.Name, cj.Name)
			}
		}
		for _, d := range m.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("PodMonitor %s scrapes %s, which a ServiceMonitor scrapes", pm.Name, d.Name)
			}
		}
	}
	metricName := regexp.MustCompile(`quiver_[a-z_]+`)
	job := regexp.MustCompile(`job="([^"]*)"`)
	var alerts []string
	for _, r := range m.rules {
		for _, g := range r.Spec.Groups {
			for _, rule := range g.Rules {
				alerts = append(alerts, rule.Alert)
				for _, name := range metricName.FindAllString(rule.Expr.String(), -1) {
					if !exportedMetric(t, name) {
						t.Errorf("alert %s: no metric %s in the code", rule.Alert, name)
					}
				}
				// The job of a ServiceMonitor's targets is the Service's name.
				for _, j := range job.FindAllStringSubmatch(rule.Expr.String(), -1) {
					if m.services[j[1]] == nil {
						t.Errorf("alert %s: job %q is no Service of the release", rule.Alert, j[1])
					}
				}
				// Serve's share of 5xx is of its API's answers: a replica
				// catching up with the changelogs answers its readiness
				// probe 503 for as long as that takes.
				for _, sel := range serveRequests.FindAllStringSubmatch(rule.Expr.String(), -1) {
					if rule.Alert == "QuiverServeErrors" && (routeSelected(t, sel[1], "/readyz") || !routeSelected(t, sel[1], "/get-online-features")) {
						t.Errorf("alert %s counts the requests of route /readyz, or not those of the API: %s", rule.Alert, sel[0])
					}
				}
			}
		}
	}
	if len(m.rules) == 0 {
		return
	}
	// The drift alerts, where ingest runs the detectors and posts to a
	// webhook; Redis's, where ingest writes to Redis.
	args := flagArgs(t, m.deployments[fullname+"-ingest"].Spec.Template.Spec.Containers[0])
	_, drift := args["models"]
	_, webhook := args["retrain-webhook"]
	redis := args["online"] == "redis"
	for alert, want := range map[string]bool{"QuiverDriftRetrainRequested": drift, "QuiverDriftWebhookFailing": webhook, "QuiverRedisStatesLost": redis} {
		if slices.Contains(alerts, alert) != want {
			t.Errorf("alert %s rendered: %v, want %v", alert, !want, want)
		}
	}
}

var (
	serveRequests = regexp.MustCompile(`quiver_serve_request_duration_seconds_count\{([^}]*)\}`)
	labelMatcher  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// routeSelected reports whether the label matchers of a PromQL selector
// ("job=\"x\", route!~\"/a|/b\"") select the series of a route.
func routeSelected(t *testing.T, matchers, route string) bool {
	for _, m := range labelMatcher.FindAllStringSubmatch(matchers, -1) {
		if m[1] != "route" {
			continue
		}
		re, err := regexp.Compile("^(?:" + m[3] + ")$")
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		if ok := map[string]bool{"=": route == m[3], "!=": route != m[3], "=~": re.MatchString(route), "!~": !re.MatchString(route)}[m[2]]; !ok {
			return false
		}
	}
	return true
}

// sources are the repository's non-test Go sources, read once.
var sources []byte

// exportedMetric reports whether a metric of that name (a histogram's
// series with its suffix) is defined in the repository's code.
func exportedMetric(t *testing.T, name string) bool {
	if sources == nil {
		err := filepath.WalkDir(repoRoot, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			sources = append(sources, b...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, suffix := range []string{"", "_count", "_sum", "_bucket"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && bytes.Contains(sources, []byte(`"`+base+`"`)) {
			return true
		}
	}
	return false
}

// binaryFlags builds the binaries and reads their flags from -h: the flag
// names of ingest, serve and each backfill subcommand ("backfill dataset").
func binaryFlags(t *testing.T) map[string]map[string]bool {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/ingest", "./cmd/serve", "./cmd/backfill")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z0-9-]+) \((QUIVER_[A-Z0-9_]+)\)$`)
	flags := map[string]map[string]bool{}
	for _, cmd := range [][]string{{"ingest"}, {"serve"}, {"backfill", "dataset"}, {"backfill", "compact"}, {"backfill", "replay"}, {"backfill", "merge"}} {
		out, err := exec.Command(filepath.Join(dir, cmd[0]), append(cmd[1:], "-h")...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s -h: %v\n%s", cmd, err, out)
		}
		names := map[string]bool{}
		for _, l := range flagLine.FindAllStringSubmatch(string(out), -1) {
			names[l[1]] = true
		}
		if !names["log-format"] {
			t.Fatalf("%s -h lists no --log-format: is its usage still `  --name (QUIVER_NAME)`?\n%s", cmd, out)
		}
		flags[strings.Join(cmd, " ")] = names
	}
	return flags
}

// quiverBinary returns the binary (and subcommand) a container runs, from
// its image name, if it runs one of Quiver's.
func quiverBinary(c corev1.Container) (string, bool) {
	image := c.Image[strings.LastIndex(c.Image, "/")+1:]
	name, _, _ := strings.Cut(image, ":")
	switch name {
	case "ingest", "serve":
		return name, len(c.Command) == 0
	case "backfill":
		return "backfill " + c.Args[0], len(c.Command) == 0
	}
	return "", false
}

// flagArgs returns a container's --name=value arguments (value "true" for
// a bare --name); a flag given twice is an error.
func flagArgs(t *testing.T, c corev1.Container) map[string]string {
	args := map[string]string{}
	for _, a := range c.Args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(name, "=")
		if !ok {
			value = "true"
		}
		if _, dup := args[name]; dup {
			t.Errorf("container %s: --%s twice", c.Name, name)
		}
		args[name] = value
	}
	return args
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, name)
	return 0
}

// mountAt returns the mount at path in c, or nil.
func mountAt(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// mountOf returns the name of the volume mounted at path in c.
func mountOf(c corev1.Container, path string) string {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return vm.Name
		}
	}
	return ""
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// selects reports whether a label selector picks a Deployment's pods.
func selects(selector map[string]string, d *appsv1.Deployment) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(d.Spec.Template.Labels))
}

// TestModelsSyncStops runs the models sidecar's script with a stand-in for
// aws: on SIGTERM it exits at once with status 0. As a container's PID 1
// the shell ignores a signal it does not trap; trapped, it exits 0 either
// way, so the status tells a trap from the default action.
func TestModelsSyncStops(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "ci/s3-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sync *corev1.Container
	containers := render(t, ch, vals).deployments[fullname+"-serve"].Spec.Template.Spec.Containers
	for i := range containers {
		if containers[i].Name == "models-sync" {
			sync = &containers[i]
		}
	}
	if sync == nil || len(sync.Command) != 2 || len(sync.Args) != 1 {
		t.Fatalf("serve's models-sync container: %+v, want /bin/sh -c and a script", sync)
	}
	dir := t.TempDir()
	synced := filepath.Join(dir, "synced")
	if err := os.WriteFile(filepath.Join(dir, "aws"), []byte("#!/bin/sh\necho \"$@\" >> "+synced+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sync.Command[0], sync.Command[1], sync.Args[0])
	cmd.Env = []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "INTERVAL=0.1", "MODELS_URL=s3://models/fraud"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(synced); strings.Contains(string(b), "s3 sync --delete --only-show-errors s3://models/fraud /quiver/models") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the script ran no aws s3 sync within 10s")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0 (a trap)", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("still running 5s after SIGTERM")
	}
}

// TestMetricsDocumented: the table of docs/deploy.md, "Metrics", names
// every metric the code exports, and no other.
func TestMetricsDocumented(t *testing.T) {
	exportedMetric(t, "quiver_") // reads the sources
	code := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(quiver_[a-z_]+)"`).FindAllSubmatch(sources, -1) {
		code[string(m[1])] = true
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "\n### Metrics\n")
	section, _, _ = strings.Cut(section, "\n### ")
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `quiver_") {
			for _, name := range regexp.MustCompile("quiver_[a-z_]+").FindAllString(first, -1) {
				documented[name] = true
			}
		}
	}
	for name := range code {
		if !documented[name] {
			t.Errorf("metric %s is not in the table of docs/deploy.md, \"Metrics\"", name)
		}
	}
	for name := range documented {
		if !code[name] {
			t.Errorf("docs/deploy.md, \"Metrics\", names %s, which the code does not export", name)
		}
	}
}
