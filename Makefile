# Quiver: streaming feature store and real-time inference.
# `make` lists the targets.

GO       ?= go
PKGS     ?= ./...
BENCHTIME ?= 1s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## compile every package and build the binaries into bin/
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/... ./examples/fraud/generate

# Programs the end-to-end tests run, from Debian's packages: kcat, a real
# third-party Kafka client, redis-server, and curl (the demo script uses it).
TEST_TOOLS := kcat:kcat redis-server:redis-server curl:curl
# The S3-compatible server the offline store's tests run (posix backend),
# built from source into bin/tools/, where internal/s3test finds it.
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test-deps
test-deps: ## install the programs the end-to-end tests run, if missing
	@missing=""; for t in $(TEST_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
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
demo: build ## run the fraud demo: broker, generator, ingest and serve; prints a curl
	examples/fraud/demo.sh
