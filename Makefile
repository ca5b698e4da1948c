# Quiver: streaming feature store and real-time inference.
# `make` lists the targets.

GO       ?= go
PKGS     ?= ./...
BENCHTIME ?= 1s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## compile every package and build the binaries into bin/
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/... ./examples/fraud/generate

# Debian packages the demo runs: curl; kcat, a real third-party Kafka client,
# and numpy and XGBoost for the retraining loop's train.py.
DEMO_PACKAGES := curl kcat python3-numpy python3-xgboost
# The end-to-end tests run the demo, and redis-server.
TEST_PACKAGES := $(DEMO_PACKAGES) redis-server
# The S3-compatible server the offline store's tests run (posix backend),
# built from source into bin/tools/, where internal/s3test finds it.
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# apt-install installs the Debian packages of $(1) that are missing.
define apt-install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: demo-deps
demo-deps: ## install the programs the demo runs, if missing
	$(call apt-install,$(DEMO_PACKAGES))

.PHONY: test-deps
test-deps: ## install the programs the end-to-end tests run, if missing
	$(call apt-install,$(TEST_PACKAGES))
	@[ -x bin/tools/versitygw ] || { echo "installing $(VERSITYGW)"; GOBIN=$(CURDIR)/bin/tools $(GO) install $(VERSITYGW); }

.PHONY: test
test: test-deps ## vet, then run every test (what CI runs)
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)

.PHONY: test-short
test-short: ## quick tests: fewer property-test cases, no end-to-end runs
	$(GO) test -short -count=1 $(PKGS)

.PHONY: bench
bench: ## run the benchmarks (see docs/BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

.PHONY: bench-backfill
bench-backfill: ## the backfill benchmark at full size: 10M events, 1M spine rows, peak memory (minutes)
	QUIVER_BENCH_EVENTS=10000000 QUIVER_BENCH_SPINE_ROWS=1000000 /usr/bin/time -v \
		$(GO) test ./internal/backfill -run '^$$' -bench BenchmarkDataset -benchtime 1x -timeout 60m

.PHONY: fuzz
fuzz: ## fuzz each decoder of outside bytes for FUZZTIME (default 30s) each
	$(GO) test ./features -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./features -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./features -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./features -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./features -run '^$$' -fuzz '^FuzzDecodeJSONMatchesReference$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./internal/serve -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./store/online -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./internal/backfill -run '^$$' -fuzz '^FuzzReadCSV$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./internal/backfill -run '^$$' -fuzz '^FuzzSpillRecord$$' -fuzztime $(or $(FUZZTIME),30s)
	# Minimizing a new input of a few KB would take the default 60 s each.
	$(GO) test ./store/offline -run '^$$' -fuzz '^FuzzReadParquet$$' -fuzztime $(or $(FUZZTIME),30s) -fuzzminimizetime 2s
	$(GO) test ./internal/jsonenc -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./model/xgboost -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(or $(FUZZTIME),30s)
	$(GO) test ./model/onnx -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(or $(FUZZTIME),30s)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: lint
lint: ## gofmt check, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: fmt
fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

# Image tag and version label: the nearest tag, commits since, the commit.
VERSION ?= $(shell git describe --tags --always --dirty)

.PHONY: images
images: ## build the container images of ingest, serve and backfill into dist/images/ (no Docker needed)
	$(GO) run ./deploy/images --out dist/images --version $(VERSION) \
		--revision $$(git rev-parse HEAD) --created $$(git log -1 --format=%ct)

.PHONY: demo
demo: build demo-deps ## run the fraud demo: broker, generator, ingest, serve and the retraining loop; prints what to try
	examples/fraud/demo.sh
