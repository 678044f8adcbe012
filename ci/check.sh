#!/usr/bin/env bash
# Every check the project has: lint, format, Dockerfiles, then the whole pytest suite
# (unit, integration against real PostgreSQL and MinIO, charts, alert rules, dashboards).
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
pytest "$@"
