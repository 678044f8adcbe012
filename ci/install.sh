#!/usr/bin/env bash
# Installs what the local run or the tests need, pinned, into project-local folders (.venv,
# .tools); skips what is already there. Safe to run again and again.
#   ci/install.sh run   what `make run` needs: PostgreSQL's server, the services' Python
#                       dependencies in .venv, minio
#   ci/install.sh       all of that and what only the tests need: the test tools in .venv,
#                       checkov, helm, promtool, prometheus, mc, openssl and nsenter
set -euo pipefail
SCOPE="${1:-all}"
case "$SCOPE" in run | all) ;; *) echo "usage: $0 [run|all]" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$ROOT/.venv"

# A `# renovate:` comment names the source of the pin below it, for Renovate (renovate.json).
HELM_MODULE="helm.sh/helm/v4/cmd/helm"
# renovate: datasource=go depName=helm.sh/helm/v4
HELM_VERSION="v4.3.1"
MINIO_MODULE="github.com/minio/minio"
# MinIO publishes no semver tags to the Go proxy; this is its last community commit.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# The MinIO client, to test the chart's MinIO provisioning script (a pinned commit: no semver tags).
MC_MODULE="github.com/minio/mc"
MC_VERSION="v0.0.0-20250313080218-cf909e1063a9"
PROMTOOL_MODULE="github.com/prometheus/prometheus/cmd/promtool"
# renovate: datasource=go depName=github.com/prometheus/prometheus
PROMTOOL_VERSION="v0.316.0"
# The Prometheus server itself, for the test that scrapes the local services with the alert rules.
PROMETHEUS_MODULE="github.com/prometheus/prometheus/cmd/prometheus"
# Jaeger v2 (all-in-one: OTLP receiver, in-memory storage, query API), the trace backend of the
# tracing test (devstack.jaeger).
JAEGER_MODULE="github.com/jaegertracing/jaeger"
# renovate: datasource=go depName=github.com/jaegertracing/jaeger
JAEGER_VERSION="v1.76.0"
# renovate: datasource=pypi depName=checkov
CHECKOV_VERSION="3.3.30"
# The chart READMEs' parameter tables, generated from the values.yaml comments (`make docs`).
HELM_DOCS_MODULE="github.com/norwoodj/helm-docs/cmd/helm-docs"
# renovate: datasource=go depName=github.com/norwoodj/helm-docs
HELM_DOCS_VERSION="v1.14.2"
# Checks the GitHub Actions workflows in .github/workflows (tests/unit/test_release_pipeline.py).
ACTIONLINT_MODULE="github.com/rhysd/actionlint/cmd/actionlint"
# renovate: datasource=go depName=github.com/rhysd/actionlint
ACTIONLINT_VERSION="v1.7.12"

log() { printf '[install] %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages: PostgreSQL server (run as its `postgres` user), Python venv ----------
apt_packages=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_packages+=(postgresql)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
command -v go >/dev/null || apt_packages+=(golang-go)
command -v pgrep >/dev/null || apt_packages+=(procps)
if [ "$SCOPE" = all ]; then
  command -v openssl >/dev/null || apt_packages+=(openssl)  # the tests' TLS certificates
  command -v nsenter >/dev/null || apt_packages+=(util-linux)  # ci/cluster/run.sh joins its network namespace
  command -v wrk >/dev/null || apt_packages+=(wrk)  # make bench's load generator
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  log "apt-get install ${apt_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi
id postgres >/dev/null 2>&1 || as_root useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres

# --- Python: exactly as locked (make lock) -----------------------------------------------
# One venv: `run` installs the three services' locks (requirements/<service>.txt, constrained by
# dev.txt, so the same versions), `all` also the dev lock, which adds the test tools. build.txt's
# setuptools builds the project: with no build isolation nothing unlocked is fetched.
venv_install() { # name, lock files
  local name="$1"; shift
  local locks=("${@/#/$ROOT/requirements/}") args=() lock stamp
  stamp="$VENV/.installed-$name-$(cat "${locks[@]}" "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return
  log "python venv in .venv (requirements/{$(IFS=,; echo "$*")})"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  for lock in "${locks[@]}"; do args+=(-r "$lock"); done
  "$VENV/bin/pip" install -q --require-hashes "${args[@]}"
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT"
  rm -f "$VENV/.installed-$name-"*
  touch "$stamp"
}
[ "$SCOPE" = run ] || venv_install dev dev.txt build.txt
venv_install run auth.txt api.txt images.txt build.txt

# --- Go-built tools ----------------------------------------------------------------------
go_tool() {
  local name="$1" module="$2" version="$3"
  if [ -x "$BIN/$name" ] && grep -qx "$module@$version" "$BIN/.$name.version" 2>/dev/null; then
    return
  fi
  log "go install $module@$version"
  mkdir -p "$BIN"
  (cd "$TOOLS" && GOBIN="$BIN" GOFLAGS=-mod=mod go install "$module@$version")
  echo "$module@$version" > "$BIN/.$name.version"
}
# For a module whose go.mod has replace directives (Jaeger's), which `go install module@version`
# refuses: build the package inside the downloaded module, with its own go.mod and go.sum.
go_tool_in_module() {
  local name="$1" module="$2" version="$3" package="$4" dir
  if [ -x "$BIN/$name" ] && grep -qx "$module@$version" "$BIN/.$name.version" 2>/dev/null; then
    return
  fi
  log "go build $module/$package@$version"
  mkdir -p "$BIN"
  dir="$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  (cd "$dir" && GOFLAGS=-mod=mod go build -o "$BIN/$name" "./$package")
  echo "$module@$version" > "$BIN/.$name.version"
}
# The local run's object store (src/devstack/minio.py).
go_tool minio "$MINIO_MODULE" "$MINIO_VERSION"

if [ "$SCOPE" = run ]; then
  log "ready to run: .venv (the services), $BIN/minio"
  exit 0
fi

# --- What only the tests need -------------------------------------------------------------
# checkov pins many libraries of its own, so it lives in a venv of its own.
if [ ! -x "$TOOLS/checkov/bin/checkov" ] || ! grep -qx "$CHECKOV_VERSION" "$TOOLS/checkov/.version" 2>/dev/null; then
  log "checkov $CHECKOV_VERSION in .tools/checkov"
  python3 -m venv "$TOOLS/checkov"
  "$TOOLS/checkov/bin/pip" install -q --upgrade pip
  "$TOOLS/checkov/bin/pip" install -q "checkov==$CHECKOV_VERSION"
  echo "$CHECKOV_VERSION" > "$TOOLS/checkov/.version"
fi

go_tool helm "$HELM_MODULE" "$HELM_VERSION"
go_tool promtool "$PROMTOOL_MODULE" "$PROMTOOL_VERSION"
go_tool mc "$MC_MODULE" "$MC_VERSION"
go_tool prometheus "$PROMETHEUS_MODULE" "$PROMTOOL_VERSION"
go_tool helm-docs "$HELM_DOCS_MODULE" "$HELM_DOCS_VERSION"
go_tool actionlint "$ACTIONLINT_MODULE" "$ACTIONLINT_VERSION"
go_tool_in_module jaeger "$JAEGER_MODULE" "$JAEGER_VERSION" cmd/jaeger

log "ready: $(ls "$BIN" | tr '\n' ' ')"
