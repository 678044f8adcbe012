#!/usr/bin/env bash
# Starts a local Kubernetes (ci/cluster/build.sh's binaries) inside a network namespace of its
# own, runs the given command against it, then stops everything and restores the host:
#
#   ci/cluster/run.sh COMMAND [ARGS...]      e.g. ci/cluster/run.sh .venv/bin/pytest tests/e2e
#
# One real node: kubelet, containerd (CRI, runc), the CNI bridge, kube-proxy (iptables),
# CoreDNS, kube-network-policies (NetworkPolicy enforcement) and metrics-server (the resource
# metrics API the HPAs read, through the aggregation layer), all as host processes in the
# namespace. The namespace holds loopback and the pod bridge and has no route out: nothing the
# cluster or its pods do can reach past this machine. Image pulls go to a dead loopback proxy;
# images come from $IMAGES_DIR (ci/images/build.sh) through `ctr import`.
#
# The command runs inside the namespace too (it sees the cluster and nothing past the machine),
# with kubectl, helm and the project's venv first on PATH and these in its environment:
#   KUBECONFIG       admin kubeconfig of the cluster
#   CLUSTER_NETNS    the namespace (another shell joins it: nsenter --net=/run/netns/$CLUSTER_NETNS)
#   CLUSTER_STATE    this run's folder (logs/, certificates, kubeconfigs)
#   CLUSTER_BIN      the binaries (kubectl, kwok, ...)
#   CLUSTER_CRDS     CRDs of Gateway API and cert-manager, for what production runs beside the chart
#   CLUSTER_NODE_IP  the node's address on the pod bridge (servers for the pods listen here)
# Its exit status is the script's.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "the local cluster needs root (network namespaces, mounts, cgroups)" >&2; exit 2; }

NETNS="${CLUSTER_NETNS:-platform-k8s}"
STATE="${CLUSTER_STATE:-$ROOT/.run/cluster}"
IMAGES_DIR="${IMAGES_DIR:-$CLUSTER_CACHE/images}"
NODE=node-1
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
CGROUP_ROOT="$NETNS"   # the pods' cgroups, one tree per cluster
# The kubelet sets these host-wide at start; they are put back on stop. The host's values are
# kept in a file until then, so that a run killed before its teardown (SIGKILL) leaves them for
# the next run to put back, instead of that run taking the kubelet's values for the host's.
HOST_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
HOST_SYSCTLS_FILE="/run/platform-cluster-$NETNS.sysctls"

log() { printf '[cluster] %s\n' "$*" >&2; }
in_netns() { nsenter --net="/run/netns/$NETNS" "$@"; }

missing=()
for pair in containerd:containerd runc:runc iptables:iptables nft:nftables conntrack:conntrack \
  /usr/lib/cni/bridge:containernetworking-plugins openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null || [ -x "${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
bash "$HERE/build.sh" >&2

# --- teardown, registered before anything starts ----------------------------------------------
pids=()
# What outlives the processes: the containers (in the pods' cgroups), the mounts under the state
# folder (volumes, root filesystems, the pods' network namespaces) and the namespace itself.
remove_leftovers() {
  local cg
  for cg in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$cg" ] || continue
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  sleep 0.5
  pkill -9 -f "containerd-shim-runc-v2 .*-address $STATE/containerd/" 2>/dev/null || true
  for cg in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  awk -v state="$STATE" 'index($2, state) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  if ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
    ip netns pids "$NETNS" | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NETNS" || true
  fi
}
teardown() {
  local status=$? pid
  trap - EXIT INT TERM
  log "stopping"
  # The node first, the control plane last; whatever has not stopped after 20 s is killed below.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  done
  remove_leftovers
  if [ -f "$HOST_SYSCTLS_FILE" ]; then
    sysctl -q -p "$HOST_SYSCTLS_FILE" >/dev/null && rm -f "$HOST_SYSCTLS_FILE"
  fi
  log "stopped (logs in $STATE/logs)"
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- a fresh state folder and network namespace ------------------------------------------------
remove_leftovers # of a run that was killed before its own teardown
rm -rf "$STATE"
mkdir -p "$STATE"/{pki,logs,etcd,containerd,kubelet,cni/net.d}
if [ ! -f "$HOST_SYSCTLS_FILE" ]; then
  for key in "${HOST_SYSCTLS[@]}"; do echo "$key = $(sysctl -n "$key")"; done >"$HOST_SYSCTLS_FILE.part"
  mv "$HOST_SYSCTLS_FILE.part" "$HOST_SYSCTLS_FILE"
fi

ip netns add "$NETNS"
in_netns ip link set lo up
in_netns ip link add cni0 type bridge
in_netns ip addr add "$NODE_IP/24" dev cni0
in_netns ip link set cni0 up
# ClusterIPs exist only as kube-proxy's DNAT rules; a route lets the node's own processes use them.
in_netns ip route add "$SERVICE_CIDR" dev cni0 src "$NODE_IP"
# Replies between pods on the bridge must pass conntrack (kube-proxy's NAT, the policies' queue).
in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1

start() { # name, command...: a host process in the cluster's network namespace
  local name="$1"; shift
  # exec: the recorded pid is the process itself, so that stopping it reaches it.
  (exec nsenter --net="/run/netns/$NETNS" "$@") >"$STATE/logs/$name.log" 2>&1 &
  pids+=("$!")
}
wait_for() { # description, seconds, command...
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then log "timed out waiting for $what"; return 1; fi
    sleep 0.5
  done
}

# --- certificates and credentials --------------------------------------------------------------
pki="$STATE/pki"
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=platform-local-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
issue() { # name, subject, extensions
  openssl_quiet req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
  openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -out "$pki/$1.crt" -extfile <(printf '%s\n' "$3")
}
issue apiserver /CN=kube-apiserver \
  "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue kubelet "/CN=system:node:$NODE/O=system:nodes" "subjectAltName=IP:$NODE_IP,DNS:$NODE"
issue apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" "extendedKeyUsage=clientAuth"
issue metrics-server /CN=metrics-server \
  "subjectAltName=IP:$NODE_IP,DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local"
# The aggregation layer: the API server proxies the metrics API to metrics-server as
# front-proxy-client, a certificate of a CA of its own that metrics-server trusts only for that.
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=platform-local-front-proxy-ca \
  -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt"
openssl_quiet req -newkey rsa:2048 -nodes -subj /CN=front-proxy-client \
  -keyout "$pki/front-proxy-client.key" -out "$pki/front-proxy-client.csr"
openssl_quiet x509 -req -in "$pki/front-proxy-client.csr" -CA "$pki/front-proxy-ca.crt" \
  -CAkey "$pki/front-proxy-ca.key" -CAcreateserial -days 2 -out "$pki/front-proxy-client.crt" \
  -extfile <(echo extendedKeyUsage=clientAuth)
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
declare -A tokens=([admin]=$(token) [kubelet]=$(token) [kube-proxy]=$(token)
  [controller-manager]=$(token) [scheduler]=$(token))
cat >"$pki/tokens.csv" <<EOF
${tokens[admin]},admin,admin,"system:masters"
${tokens[kubelet]},system:node:$NODE,$NODE,"system:nodes"
${tokens[kube-proxy]},system:kube-proxy,kube-proxy,
${tokens[controller-manager]},system:kube-controller-manager,kube-controller-manager,
${tokens[scheduler]},system:kube-scheduler,kube-scheduler,
EOF
kubeconfig() { # who
  cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$pki/ca.crt"}}]
users: [{name: $1, user: {token: "${tokens[$1]}"}}]
contexts: [{name: local, context: {cluster: local, user: $1}}]
current-context: local
EOF
}
for who in "${!tokens[@]}"; do kubeconfig "$who"; done

# --- control plane ------------------------------------------------------------------------------
log "starting etcd and the control plane in network namespace $NETNS"
start etcd "$CLUSTER_BIN/etcd" --data-dir "$STATE/etcd" --name local \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster local=http://127.0.0.1:2380 --log-level warn
start kube-apiserver "$CLUSTER_BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port 6443 \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$pki/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
  --enable-aggregator-routing --profiling=false
export KUBECONFIG="$STATE/admin.kubeconfig"
kubectl() { in_netns "$CLUSTER_BIN/kubectl" "$@"; }
wait_for "the API server" 120 kubectl get --raw /readyz
start kube-controller-manager "$CLUSTER_BIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false \
  --controllers '*,-node-ipam-controller' --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" --profiling=false
start kube-scheduler "$CLUSTER_BIN/kube-scheduler" \
  --kubeconfig "$STATE/scheduler.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false --profiling=false

# --- the node -----------------------------------------------------------------------------------
cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_VERSION"
  # root here lacks CAP_SYS_RESOURCE: runc may not lower a container's oom_score_adj.
  restrict_oom_score_adj = true
  # The pods' network namespaces under this run's state, not /run/netns: unmounted on stop.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
cat >"$STATE/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "platform-local", "plugins": [{
  "type": "bridge", "bridge": "cni0", "isGateway": false, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
           "routes": [{"dst": "$SERVICE_CIDR", "gw": "$NODE_IP"}], "dataDir": "$STATE/cni/ipam"}}]}
EOF
# A pull that slips through fails at once instead of leaving the machine.
start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  containerd --config "$STATE/containerd/config.toml"
ctr() { command ctr --address "$STATE/containerd/containerd.sock" -n k8s.io "$@"; }
wait_for containerd 30 ctr version
for archive in "$IMAGES_DIR"/*.tar; do
  [ -e "$archive" ] || { log "no images in $IMAGES_DIR: run ci/images/build.sh first"; exit 1; }
  log "importing $(basename "$archive")"
  ctr images import "$archive" >/dev/null
done

for cg in /sys/fs/cgroup/*/; do
  case "$cg" in */unified/) continue ;; esac
  mkdir -p "$cg$CGROUP_ROOT"
done
printf 'nameserver %s\n' "$NODE_IP" >"$STATE/resolv.conf"
cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine runs cgroup v1 (deprecated in 1.37, refused unless allowed) and has swap settings of its own.
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
# Imported images cannot be pulled again: never collect them, never evict for a busy disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
EOF
kubeconfig_node="$STATE/kubelet.kubeconfig"
start kubelet "$CLUSTER_BIN/kubelet" --config "$STATE/kubelet/config.yaml" \
  --kubeconfig "$kubeconfig_node" --root-dir "$STATE/kubelet" --hostname-override "$NODE" \
  --node-ip "$NODE_IP"
cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$CLUSTER_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

cat >"$STATE/Corefile" <<EOF
.:53 {
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/admin.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
EOF
start coredns "$CLUSTER_BIN/coredns" -conf "$STATE/Corefile"
start kube-network-policies env KUBECONFIG="$STATE/admin.kubeconfig" \
  "$CLUSTER_BIN/kube-network-policies" --hostname-override "$NODE" --disable-nri \
  --netfilter-bug-1766-fix=false --metrics-bind-address 127.0.0.1:9080 --v 2

wait_for "node $NODE to be Ready" 120 kubectl wait --for condition=Ready "node/$NODE" --timeout 5s

# metrics-server on the node's address, behind a Service without selector: the API server
# refuses loopback endpoints, and routes to the endpoint itself (--enable-aggregator-routing).
start metrics-server "$CLUSTER_BIN/metrics-server" --kubeconfig "$STATE/admin.kubeconfig" \
  --authentication-kubeconfig "$STATE/admin.kubeconfig" --authorization-kubeconfig "$STATE/admin.kubeconfig" \
  --bind-address "$NODE_IP" --secure-port 4443 \
  --tls-cert-file "$pki/metrics-server.crt" --tls-private-key-file "$pki/metrics-server.key" \
  --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
  --metric-resolution 15s --profiling=false
ca_bundle=$(base64 -w0 "$pki/ca.crt")
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: 4443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: https, port: 4443, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $ca_bundle
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
wait_for "the default ServiceAccount" 60 kubectl get serviceaccount default -n default
wait_for CoreDNS 30 in_netns curl -fsS http://127.0.0.1:8181/ready
wait_for "the metrics API" 60 kubectl wait --for condition=Available apiservice/v1beta1.metrics.k8s.io --timeout 5s
log "ready: node $NODE ($NODE_IP), state in $STATE"

export CLUSTER_NETNS="$NETNS" CLUSTER_STATE="$STATE" CLUSTER_BIN CLUSTER_CRDS CLUSTER_NODE_IP="$NODE_IP"
export PATH="$CLUSTER_BIN:$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"
set +e
in_netns "$@"
status=$?
set -e
exit "$status"
