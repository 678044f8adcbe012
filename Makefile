# The two commands a developer needs on a fresh machine are `make run` and `make test`;
# both install what they need first (ci/install.sh, idempotent): `make run` only the
# services' Python dependencies, PostgreSQL's server and minio; `make test` every tool, and it
# also builds the local cluster's binaries and the images (see ci/check.sh).
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON := .venv/bin/python

.PHONY: help tools run-tools run test lint format docs bench bench-compare lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

tools: ## install every pinned tool into .venv and .tools (skips what is there)
	@bash ci/install.sh

run-tools: ## install only what `make run` needs: the services' venv, PostgreSQL's server, minio
	@bash ci/install.sh run

run: run-tools ## run PostgreSQL, MinIO and the three services locally (API on 127.0.0.1:3002)
	$(PYTHON) -m devstack

test: ## every check: lint, Dockerfiles, unit, integration, charts, alerts, dashboards, images, local cluster
	bash ci/check.sh

lint: tools ## lint and format checks only
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: tools ## apply ruff's formatting and safe fixes
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# Only the project's charts: the third-party ones copied into charts/platform/charts/ have their own
# READMEs. tests/charts/test_docs.py runs this target in a copy and fails when a README differs.
HELM_DOCS_CHARTS := charts/platform,charts/platform/charts/auth,charts/platform/charts/api,charts/platform/charts/images
docs: ## regenerate the chart READMEs' parameter tables from the values.yaml comments (helm-docs)
	@test -x .tools/bin/helm-docs || bash ci/install.sh
	.tools/bin/helm-docs --chart-search-root charts --chart-to-generate $(HELM_DOCS_CHARTS) \
	  --template-files README.md.gotmpl --sort-values-order file --log-level warning

# Every tool, not only run-tools: the backup benchmark makes its MinIO user with mc.
bench: tools ## CPU per request against ceilings of the same run, uploads, memory, backup on a fresh stack (BENCH=name for one)
	$(PYTHON) -m bench $(BENCH)

bench-compare: ## print the last two runs side by side (or OLD=a.json NEW=b.json)
	$(PYTHON) -m bench compare $(OLD) $(NEW)

lock: ## rewrite the hashed lock files in requirements/ from setup.cfg (after changing a dependency)
	bash ci/lock.sh

clean: ## remove local state (.run) but keep installed tools
	rm -rf .run
