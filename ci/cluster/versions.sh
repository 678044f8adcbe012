# Pinned versions of everything the local cluster is built from, and where the builds are kept.
# Sourced by the scripts beside it.

# renovate: datasource=go depName=k8s.io/kubernetes
KUBERNETES_VERSION=v1.37.2   # ci/cluster/kubernetes/go.mod requires the same
# renovate: datasource=go depName=go.etcd.io/etcd/server/v3
ETCD_VERSION=v3.7.3          # ci/cluster/etcd/go.mod
# renovate: datasource=go depName=github.com/coredns/coredns
COREDNS_VERSION=v1.14.7      # ci/cluster/coredns/go.mod
# renovate: datasource=go depName=sigs.k8s.io/kwok
KWOK_VERSION=v0.7.0
# renovate: datasource=go depName=sigs.k8s.io/metrics-server
METRICS_SERVER_VERSION=v0.9.0
# renovate: datasource=go depName=sigs.k8s.io/kube-network-policies
KUBE_NETWORK_POLICIES_VERSION=v0.8.0
# renovate: datasource=go depName=github.com/traefik/traefik/v3
TRAEFIK_VERSION=v3.7.13       # ci/cluster/traefik/*.patch are made against it
# The monitoring stack that kube-prometheus-stack (charts/platform, 88.5.3) runs, built as the
# images it renders (ci/images/build.sh): the operator at the chart's appVersion, Prometheus and
# Alertmanager at the tags of its values.yaml. Change them with the chart.
# renovate: datasource=go depName=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_VERSION=v0.93.1  # ci/cluster/prometheus-operator/go.mod requires the same
# renovate: datasource=go depName=github.com/prometheus/prometheus
PROMETHEUS_VERSION=v0.314.0          # the Go module's v0.3XY.Z is Prometheus 3.XY.Z
prometheus_minor="${PROMETHEUS_VERSION#v0.}"; prometheus_minor="${prometheus_minor%%.*}"
PROMETHEUS_RELEASE="v${prometheus_minor:0:1}.$((10#${prometheus_minor:1})).${PROMETHEUS_VERSION##*.}"
# renovate: datasource=go depName=github.com/prometheus/alertmanager
ALERTMANAGER_VERSION=v0.34.0
# binary=image: the image ci/images/build.sh makes of each binary, named as the chart renders it
# with its defaults (tests/charts/test_workloads.py checks that they agree).
MONITORING_IMAGES=(
  "prometheus-operator=quay.io/prometheus-operator/prometheus-operator:$PROMETHEUS_OPERATOR_VERSION"
  "prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:$PROMETHEUS_OPERATOR_VERSION"
  "prometheus=quay.io/prometheus/prometheus:$PROMETHEUS_RELEASE-distroless"
  "alertmanager=quay.io/prometheus/alertmanager:$ALERTMANAGER_VERSION"
)
DEBIAN_SUITE=bookworm
PAUSE_VERSION=3.10         # the sandbox image containerd runs, built from pause.c
# CRDs of what production runs beside the chart (its HTTPRoute and cert-manager Certificate).
# renovate: datasource=go depName=sigs.k8s.io/gateway-api
GATEWAY_API_VERSION=v1.6.3
# renovate: datasource=go depName=github.com/cert-manager/cert-manager
CERT_MANAGER_VERSION=v1.21.2

# Outside the checkout, so that CI's fresh clone on the same machine finds what an earlier run
# built. Each binary carries a stamp of what it was built from (version, go.mod, go.sum, patch),
# so a change of any of them builds that binary anew.
CLUSTER_CACHE="${PLATFORM_CACHE_DIR:-/var/cache/platform-ci}"
CLUSTER_BIN="$CLUSTER_CACHE/bin"
CLUSTER_CRDS="$CLUSTER_CACHE/crds-gateway-api-$GATEWAY_API_VERSION-standard-cert-manager-$CERT_MANAGER_VERSION"
