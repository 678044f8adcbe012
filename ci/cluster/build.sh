#!/usr/bin/env bash
# Builds the local cluster's binaries (Kubernetes control plane and node, etcd, CoreDNS, kwok,
# kube-network-policies, Traefik, metrics-server), or those of the monitoring stack's images
# (Prometheus Operator, its config reloader, Prometheus, Alertmanager), from the Go module proxy
# into $CLUSTER_BIN, skipping each one whose stamp matches. Cold: about 50 minutes on 2 cores for
# the cluster (Traefik 8 of them), 23 for the monitoring stack (Prometheus 14 of them); with Go's
# build cache warm: a few minutes; with the binaries cached: seconds.
#
#   ci/cluster/build.sh              the cluster (ci/cluster/run.sh)
#   ci/cluster/build.sh monitoring   the monitoring stack (ci/images/build.sh packs it as images)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

log() { printf '[cluster-build] %s\n' "$*"; }
mkdir -p "$CLUSTER_BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

stamp_of() { # name, then the files and words it is built from
  local name="$1"; shift
  # Paths relative to this folder, so that a clone elsewhere finds the same stamps.
  { printf '%s\n' "${@#"$HERE"/}"; for f in "$@"; do [ -f "$f" ] && cat "$f"; done; go env GOVERSION; } |
    sha256sum | cut -c1-16 | sed "s/^/$name-/"
}
fresh() { [ -x "$CLUSTER_BIN/$1" ] && [ "$(cat "$CLUSTER_BIN/.$1.stamp" 2>/dev/null)" = "$2" ]; }
mark() { echo "$2" > "$CLUSTER_BIN/.$1.stamp"; }

# The version the servers report: without it they say v0.0.0-master, which a chart's
# kubeVersion constraint refuses.
k8s_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build_kubernetes() {
  local cmd stamp
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    stamp=$(stamp_of "$cmd" "$KUBERNETES_VERSION" "$HERE/kubernetes/go.mod" "$HERE/kubernetes/go.sum")
    fresh "$cmd" "$stamp" && continue
    log "go build $cmd $KUBERNETES_VERSION"
    (cd "$HERE/kubernetes" && go build -trimpath -ldflags "$(k8s_ldflags)" \
      -o "$CLUSTER_BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    mark "$cmd" "$stamp"
  done
}

build_in_module() { # name, module folder, package
  local stamp
  stamp=$(stamp_of "$1" "$HERE/$2/go.mod" "$HERE/$2/go.sum" "$HERE/$2/main.go")
  fresh "$1" "$stamp" && return
  log "go build $1 ($3)"
  (cd "$HERE/$2" && go build -trimpath -ldflags "-s -w" -o "$CLUSTER_BIN/$1" "$3")
  mark "$1" "$stamp"
}

go_install() { # name, package, version
  local stamp; stamp=$(stamp_of "$1" "$3")
  fresh "$1" "$stamp" && return
  log "go install $2@$3"
  GOBIN="$CLUSTER_BIN" GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" "$2@$3"
  mark "$1" "$stamp"
}

# kube-network-policies, patched (see kube-network-policies.patch for why): built from a copy of
# its module source with the patch applied.
build_kube_network_policies() {
  local patch="$HERE/kube-network-policies.patch" stamp src work
  stamp=$(stamp_of kube-network-policies "$KUBE_NETWORK_POLICIES_VERSION" "$patch")
  fresh kube-network-policies "$stamp" && return
  log "go build sigs.k8s.io/kube-network-policies@$KUBE_NETWORK_POLICIES_VERSION (patched)"
  src=$(module_dir "sigs.k8s.io/kube-network-policies@$KUBE_NETWORK_POLICIES_VERSION")
  work=$(mktemp -d)
  cp -r "$src/." "$work" && chmod -R u+w "$work"
  patch -d "$work" -p1 --quiet < "$patch"
  (cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$CLUSTER_BIN/kube-network-policies" ./cmd)
  rm -rf "$work"
  mark kube-network-policies "$stamp"
}

# Traefik, the ingress controller the end-to-end tests run beside the cluster, patched (each patch
# in traefik/ says why): built from a copy of its module source with the patches applied. With its
# version stamped it checks for updates by default: run it with --global.checkNewVersion=false.
build_traefik() {
  local stamp src work patch
  stamp=$(stamp_of traefik "$TRAEFIK_VERSION" "$HERE"/traefik/*.patch)
  fresh traefik "$stamp" && return
  log "go build github.com/traefik/traefik/v3@$TRAEFIK_VERSION (patched)"
  src=$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")
  work=$(mktemp -d)
  cp -r "$src/." "$work" && chmod -R u+w "$work"
  for patch in "$HERE"/traefik/*.patch; do patch -d "$work" -p1 --quiet < "$patch"; done
  (cd "$work" && go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$CLUSTER_BIN/traefik" ./cmd/traefik)
  rm -rf "$work"
  mark traefik "$stamp"
}

# The published CRDs, read from the modules' source (plain YAML there).
fetch_crds() {
  [ -f "$CLUSTER_CRDS/.complete" ] && return
  log "CRDs of Gateway API $GATEWAY_API_VERSION and cert-manager $CERT_MANAGER_VERSION"
  local gateway cert_manager
  gateway=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  cert_manager=$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")
  mkdir -p "$CLUSTER_CRDS"
  # Every resource of Gateway API's standard channel: a controller watches them all (Traefik
  # waits for GRPCRoutes and BackendTLSPolicies too). Its ValidatingAdmissionPolicy is left out.
  find "$gateway/config/crd/standard" -name 'gateway.networking.k8s.io_*.yaml' ! -name '*_vap_*' \
    -exec cp {} "$CLUSTER_CRDS/" \;
  cp "$cert_manager"/deploy/crds/cert-manager.io_{certificates,clusterissuers,issuers,certificaterequests}.yaml "$CLUSTER_CRDS/"
  touch "$CLUSTER_CRDS/.complete"
}
module_dir() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }

# The version the Prometheus projects report (`--version`, build info metrics), set as their
# release builds set it (.promu.yml, the operator's Makefile); the revision is left for
# prometheus/common to fill in ("unknown": the module proxy serves no git checkout).
prometheus_ldflags() { # release version without the v
  local pkg=github.com/prometheus/common/version
  echo "-s -w -X $pkg.Version=$1 -X $pkg.Branch=HEAD -X $pkg.BuildUser=platform-ci -X $pkg.BuildDate=19700101-00:00:00"
}

# The operator and its config reloader (the sidecar it adds to the Prometheus and Alertmanager
# pods), through the wrapper module in prometheus-operator/: upstream's go.mod replaces its API
# modules with local paths, which `go install` refuses.
build_prometheus_operator() {
  local flags cmd stamp
  flags=$(prometheus_ldflags "${PROMETHEUS_OPERATOR_VERSION#v}")
  for cmd in prometheus-operator prometheus-config-reloader; do
    stamp=$(stamp_of "$cmd" "$PROMETHEUS_OPERATOR_VERSION" "$flags" \
      "$HERE/prometheus-operator/go.mod" "$HERE/prometheus-operator/go.sum")
    fresh "$cmd" "$stamp" && continue
    log "go build $cmd $PROMETHEUS_OPERATOR_VERSION"
    # Upstream's cmd/ folder names the operator just "operator".
    (cd "$HERE/prometheus-operator" && go build -trimpath -ldflags "$flags" -o "$CLUSTER_BIN/$cmd" \
      "github.com/prometheus-operator/prometheus-operator/cmd/${cmd/#prometheus-operator/operator}")
    mark "$cmd" "$stamp"
  done
}

# A Prometheus project's server built from a copy of its module source, with its own go.mod and
# go.sum (Prometheus's go.mod has a replace directive, which `go install` refuses) and, where
# given, a patch. Tag netgo as upstream's; not builtinassets: the web UI is built with npm and is
# not in the module (its pages answer 500, "Error opening React index.html"; the API is complete).
build_prometheus_project() { # name, module@version, release version, patch file or ""
  local name="$1" module="$2" release="$3" patch="$4" flags stamp src work
  flags=$(prometheus_ldflags "$release")
  stamp=$(stamp_of "$name" "$module" "$flags" ${patch:+"$patch"})
  fresh "$name" "$stamp" && return
  log "go build $name $release ($module${patch:+, patched})"
  src=$(module_dir "$module")
  work=$(mktemp -d)
  cp -r "$src/." "$work" && chmod -R u+w "$work"
  [ -z "$patch" ] || patch -d "$work" -p1 --quiet < "$patch"
  # GOWORK=off: Prometheus's go.work names nested modules that its module zip leaves out.
  (cd "$work" && GOWORK=off go build -trimpath -tags netgo -ldflags "$flags" -o "$CLUSTER_BIN/$name" "./cmd/$name")
  rm -rf "$work"
  mark "$name" "$stamp"
}

build_monitoring() {
  build_prometheus_operator
  build_prometheus_project prometheus "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" \
    "${PROMETHEUS_RELEASE#v}" ""
  build_prometheus_project alertmanager "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" \
    "${ALERTMANAGER_VERSION#v}" "$HERE/alertmanager.patch"
}

# Two separate sets: ci/check.sh builds the cluster in the background while ci/images/build.sh
# builds the monitoring stack, and neither may write a binary the other is writing.
case "${1:-cluster}" in
  cluster)
    build_kubernetes
    fetch_crds
    build_in_module etcd etcd go.etcd.io/etcd/server/v3
    build_in_module coredns coredns .
    build_kube_network_policies
    build_traefik
    go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
    # The resource metrics API (kubectl top, the HPAs), served through the aggregation layer.
    go_install metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server "$METRICS_SERVER_VERSION"
    ;;
  monitoring) build_monitoring ;;
  *) echo "usage: $0 [cluster|monitoring]" >&2; exit 2 ;;
esac
log "ready in $CLUSTER_BIN: $(ls "$CLUSTER_BIN" | tr '\n' ' ')"
