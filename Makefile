# apparate — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM_STAMP := node_modules/.package-lock.json

help:
	@echo "make demo       local registry + image + -apparate variant + webhook + sample pod and its patch"
	@echo "make test       every test (installs what it needs: npm packages, Debian packages, helm)"
	@echo "make bench      benchmarks -> bench/results.json and bench/results.md"
	@echo "make build      compile TypeScript to dist/"
	@echo "make manifests  render deploy/manifests/apparate.yaml from the chart"
	@echo "make e2e-kind   the same flow on a real cluster (kind), for users who have one"

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP)
	@bash deploy/demo/install-deps.sh

build: $(NPM_STAMP)
	npm run -s build

typecheck: $(NPM_STAMP)
	npx tsc -p tsconfig.test.json

lint: $(NPM_STAMP)
	npx biome lint

helm: $(NPM_STAMP)
	@bash test/support/install-helm.sh

demo: deps build
	@bash deploy/demo/demo.sh

# kube-apiserver's mutating webhook admission plugin, from Debian unstable's packaged sources.
apiserver-driver:
	@bash test/support/build-apiserver-driver.sh

test: deps build typecheck lint helm apiserver-driver
	npx vitest run

bench: deps build
	npm run -s bench

manifests: helm
	@bash deploy/render-manifests.sh

e2e-kind:
	@bash deploy/e2e-kind.sh

.PHONY: help deps build typecheck lint helm apiserver-driver demo test bench manifests e2e-kind
