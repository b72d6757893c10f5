# keyward — developer entry points. Run `make help` for the list.
#
# Node 24 comes from the `node` npm package (node_modules/.bin/node), so every
# recipe here runs on it whatever the system Node is.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NODE_DEPS := node_modules/.package-lock.json

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: $(NODE_DEPS) ## Install npm dependencies, Node 24 included (idempotent)
	@echo "node $$(node --version)"

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver and kube-controller-manager into the cache (once)
	@scripts/controlplane-build.sh >/dev/null

.PHONY: kubectl
kubectl: ## Build kubectl (the control plane's Kubernetes version) into the tools cache (once); prints its path
	@scripts/kubectl-build.sh

.PHONY: tools
tools: ## Install nginx, Prometheus and promtool, Redis and PostgreSQL; build grpcurl, h2spec, ghz, vegeta, the Go ext_authz client, the Go load generator of the analytics bench, helm and kubeconform; install Envoy into the cache (once)
	@scripts/install-system-deps.sh
	@scripts/tools-build.sh
	@scripts/chart-tools.sh
	@scripts/envoy-install.sh

.PHONY: setup
setup: deps controlplane kubectl tools ## Everything the tests need (idempotent); the demo needs only deps, controlplane and kubectl

.PHONY: typecheck
typecheck: $(NODE_DEPS) ## TypeScript, strict
	tsc -p tsconfig.json --noEmit
	tsc -p src/console/web/tsconfig.json --noEmit

.PHONY: lint
lint: $(NODE_DEPS) ## eslint with typescript-eslint
	eslint --max-warnings 0 .

.PHONY: test-unit
test-unit: $(NODE_DEPS) ## Unit tests only (no processes started)
	vitest run --project unit

.PHONY: test-integration
test-integration: setup ## Integration tests against a real control plane
	vitest run --project integration

.PHONY: rules
rules: ## Check and unit-test the Prometheus rules in deploy/prometheus with promtool
	cd deploy/prometheus && promtool check rules keyward.rules.yaml && promtool test rules keyward.rules.test.yaml

.PHONY: prometheusrule
prometheusrule: ## Regenerate deploy/prometheus/prometheusrule.yaml from keyward.rules.yaml (a unit test compares them)
	@{ sed -n '1,/^spec:$$/p' deploy/prometheus/prometheusrule.yaml; sed -n '/^groups:/,$$p' deploy/prometheus/keyward.rules.yaml | sed -e 's/^/  /' -e 's/^ *$$//'; } > deploy/prometheus/prometheusrule.yaml.new
	@mv deploy/prometheus/prometheusrule.yaml.new deploy/prometheus/prometheusrule.yaml

.PHONY: test
test: setup typecheck lint rules ## Everything: typecheck, lint, promtool rule tests, unit and integration tests
	vitest run

.PHONY: cluster
cluster: deps controlplane ## Start the local control plane in the background; prints the kubeconfig path
	@node test/controlplane/cli.ts up

.PHONY: cluster-down
cluster-down: $(NODE_DEPS) ## Stop the local control plane
	@node test/controlplane/cli.ts down

.PHONY: demo
demo: deps controlplane kubectl ## Local control plane + keyward run: keys issued, requests checked, a revocation
	@node scripts/demo.ts

.PHONY: run
run: $(NODE_DEPS) ## Run keyward (operator + ext_authz) against the current kubeconfig
	node src/main.ts run --no-leader-elect $(ARGS)

.PHONY: build
build: $(NODE_DEPS) ## Build keyward's JavaScript into dist/ as the image's build stage does (ADR 58); development runs the sources
	node scripts/build.ts

.PHONY: docs
docs: $(NODE_DEPS) ## Regenerate docs/configuration.md from the settings table, and the layer table and diagram of docs/architecture.md
	node src/main.ts config --markdown > docs/configuration.md
	node scripts/layers-doc.ts --write

.PHONY: bench
bench: deps controlplane ## Benchmarks (~40 min, plus the start-up section's seeding of 110k ApiKeys; not part of make test): results in bench/results/, see docs/benchmarks.md
	@scripts/tools-build.sh
	@scripts/envoy-install.sh
	node bench/run.ts $(ARGS)
