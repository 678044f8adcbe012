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
