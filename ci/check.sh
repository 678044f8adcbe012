#!/usr/bin/env bash
# Every check the project has: lint, format, Dockerfiles, the pytest suite (unit, integration
# against real PostgreSQL and MinIO, charts, alert rules, dashboards), then the service images
# built with Docker and the chart installed from them into a local Kubernetes (tests/e2e).
# Expects ci/install.sh to have run (`make test` does both).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"

echo "== ruff lint"
ruff check .
echo "== ruff format --check"
ruff format --check .
echo "== hadolint"
hadolint --config ci/hadolint.yaml src/*/Dockerfile
echo "== pytest"
pytest --ignore=tests/e2e "$@"
echo "== images (ci/images/build.sh)"
bash ci/images/build.sh
echo "== local cluster: pytest tests/e2e (ci/cluster/run.sh)"
bash ci/cluster/run.sh pytest tests/e2e "$@"
