#!/usr/bin/env bash
# Every check the project has (`make test`): the tools (ci/install.sh), lint, format, Dockerfiles,
# the pytest suite (unit, integration against real PostgreSQL and MinIO, charts, alert rules,
# dashboards), then the service images built with Docker (ci/images/build.sh) and the chart
# installed from them into a local Kubernetes (ci/cluster/run.sh, tests/e2e).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"

# The cluster's binaries build beside install.sh and the first checks: on a new machine both are
# long Go builds, and together they take little longer than the longer one. Each skips what is built.
mkdir -p .run
bash ci/cluster/build.sh >.run/cluster-build.log 2>&1 &
cluster_build=$!
trap 'kill "$cluster_build" 2>/dev/null || true' EXIT

echo "== tools (ci/install.sh)"
bash ci/install.sh
echo "== ruff lint"
ruff check .
echo "== ruff format --check"
ruff format --check .
echo "== hadolint"
hadolint --config ci/hadolint.yaml src/*/Dockerfile ci/images/*.Dockerfile
echo "== pytest"
pytest "$@"   # all but tests/e2e (tests/conftest.py leaves it to the cluster below)
echo "== images (ci/images/build.sh)"
bash ci/images/build.sh
echo "== local cluster binaries (ci/cluster/build.sh)"
wait "$cluster_build" || { tail -40 .run/cluster-build.log; exit 1; }
tail -1 .run/cluster-build.log
echo "== local cluster: pytest tests/e2e (ci/cluster/run.sh)"
bash ci/cluster/run.sh pytest tests/e2e "$@"
