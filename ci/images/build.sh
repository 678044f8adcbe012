#!/usr/bin/env bash
# Builds the three service images with Docker from src/<service>/Dockerfile, named exactly as
# the chart renders them (ghcr.io/platform-sre/<service>:<appVersion>), prints their sizes and
# saves each as a tar in $IMAGES_DIR for the local cluster to import; likewise the pod sandbox
# image and the monitoring stack's four images (Prometheus Operator, config reloader, Prometheus,
# Alertmanager), each its binary from ci/cluster/build.sh FROM scratch.
#
# Where no registry is reachable (these machines), the Dockerfiles get two build arguments and
# nothing else changes: BASE_IMAGE, a Debian 12 base made by debootstrap from Debian's packages
# (Python 3.11, like python:3.11-slim-bookworm), and pip reading a wheelhouse built on the host
# and served on loopback. Set BASE_IMAGE=python:3.11-slim-bookworm to build on the real base.
#
# Uses the Docker engine at $DOCKER_HOST or /var/run/docker.sock when one answers; otherwise
# starts a dockerd of its own (no bridge, no iptables, data kept in the cache) and stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../cluster/versions.sh
source "$ROOT/ci/cluster/versions.sh"

IMAGES_DIR="${IMAGES_DIR:-$CLUSTER_CACHE/images}"
WHEELS="$CLUSTER_CACHE/wheels"
DOCKER_STATE="$CLUSTER_CACHE/docker"
LOCAL_BASE="platform-local/debian-python:$DEBIAN_SUITE"
SERVICES=(auth api images)

log() { printf '[images] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
mkdir -p "$IMAGES_DIR" "$WHEELS" "$DOCKER_STATE"

cleanup=()
on_exit() { local step; for step in "${cleanup[@]}"; do eval "$step" || true; done; }
trap on_exit EXIT

# --- a Docker engine ------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  export DOCKER_HOST="unix://$DOCKER_STATE/docker.sock"
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (data in $DOCKER_STATE)"
    # No bridge and no iptables rules: builds run with --network host, and nothing here needs a
    # container network that could reach past the machine.
    dockerd --data-root "$DOCKER_STATE/data" --exec-root "$DOCKER_STATE/exec" \
      --pidfile "$DOCKER_STATE/dockerd.pid" -H "$DOCKER_HOST" \
      --bridge none --iptables=false --ip6tables=false --ip-masq=false \
      >"$DOCKER_STATE/dockerd.log" 2>&1 &
    dockerd_pid=$!
    # dockerd leaves its exec root's mounts (the default network namespace) behind: unmount them.
    cleanup+=("kill $dockerd_pid; wait $dockerd_pid; awk -v root=\"$DOCKER_STATE/exec\" 'index(\$2, root) == 1 {print \$2}' /proc/mounts | xargs -r umount -l")
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -20 "$DOCKER_STATE/dockerd.log"; exit 1; }
  fi
fi

# --- the base and the wheelhouse (only where the real base cannot be pulled) -----------------
build_args=()
if [ -z "${BASE_IMAGE:-}" ]; then
  if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    rootfs="$CLUSTER_CACHE/rootfs-$DEBIAN_SUITE.tar"
    if [ ! -f "$rootfs" ]; then
      log "debootstrap $DEBIAN_SUITE (python3, python3-venv, ca-certificates)"
      dir=$(mktemp -d)
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$DEBIAN_SUITE" "$dir" http://deb.debian.org/debian >"$CLUSTER_CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CLUSTER_CACHE/debootstrap.log"; exit 1; }
      rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
      tar -C "$dir" -cf "$rootfs.part" . && mv "$rootfs.part" "$rootfs"
      rm -rf "$dir"
    fi
    docker import "$rootfs" "$LOCAL_BASE" >/dev/null
  fi
  BASE_IMAGE="$LOCAL_BASE"

  # The very files the locks name (their hashes are checked again inside the build), as wheels
  # for the images' Python 3.11 on glibc 2.36 whatever the host, so no compiler is needed there.
  locks=(build "${SERVICES[@]}")
  wheels_stamp=$(for lock in "${locks[@]}"; do cat "$ROOT/requirements/$lock.txt"; done | sha256sum | cut -c1-16)
  if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$wheels_stamp" ]; then
    log "wheelhouse in $WHEELS (requirements/{${locks[*]}}.txt)"
    # Afresh: a wheel of an older lock left beside would be one more candidate for pip to weigh.
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    platforms=()
    for minor in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
    for lock in "${locks[@]}"; do
      "$ROOT/.venv/bin/pip" download -q --require-hashes --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp "${platforms[@]}" \
        --dest "$WHEELS" -r "$ROOT/requirements/$lock.txt"
    done
    echo "$wheels_stamp" > "$WHEELS/.stamp"
  fi
  # A fixed port: the address is a build argument, and a new one each run would defeat Docker's cache.
  port="${WHEELHOUSE_PORT:-3141}"
  "$ROOT/.venv/bin/python" -m http.server --bind 127.0.0.1 --directory "$WHEELS" "$port" >/dev/null 2>&1 &
  cleanup+=("kill $!")
  for _ in $(seq 20); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.2; done
  build_args+=(--build-arg PIP_NO_INDEX=1 --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
fi
build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

# --- the images -----------------------------------------------------------------------------
image_name() { # the name the chart renders for a service's Deployment
  "$ROOT/.venv/bin/python" - "$ROOT/charts/platform" "$1" <<'PY'
import sys, pathlib, yaml
chart, service = pathlib.Path(sys.argv[1]), sys.argv[2]
umbrella = yaml.safe_load((chart / "values.yaml").read_text())["global"]["image"]
sub = chart / "charts" / service
image = yaml.safe_load((sub / "values.yaml").read_text())["image"]
tag = image["tag"] or umbrella.get("tag") or yaml.safe_load((sub / "Chart.yaml").read_text())["appVersion"]
print(f"{image['registry'] or umbrella['registry']}/{image['repository']}:{tag}")
PY
}

for service in "${SERVICES[@]}"; do
  name=$(image_name "$service")
  log "docker build $name"
  started=$SECONDS
  docker build --network host "${build_args[@]}" -f "$ROOT/src/$service/Dockerfile" -t "$name" "$ROOT" \
    >"$IMAGES_DIR/$service.build.log" 2>&1 || { tail -40 "$IMAGES_DIR/$service.build.log"; exit 1; }
  docker save "$name" -o "$IMAGES_DIR/$service.tar.part" && mv "$IMAGES_DIR/$service.tar.part" "$IMAGES_DIR/$service.tar"
  size=$(docker image inspect "$name" --format '{{.Size}}')
  log "$name: $((size / 1024 / 1024)) MiB, built in $((SECONDS - started)) s"
done
# The pod sandbox image the node's containerd runs (sandbox_image in ci/cluster/run.sh): built
# from Kubernetes' own pause.c, since registry.k8s.io cannot be reached.
pause_name="registry.k8s.io/pause:$PAUSE_VERSION"
if [ "$(cat "$IMAGES_DIR/.pause.stamp" 2>/dev/null)" != "$pause_name" ] || [ ! -f "$IMAGES_DIR/pause.tar" ]; then
  log "docker build $pause_name (static pause.c of k8s.io/kubernetes@$KUBERNETES_VERSION)"
  pause_src=$(cd "$ROOT/ci/cluster/kubernetes" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c
  dir=$(mktemp -d)
  gcc -Os -static -DVERSION="v$PAUSE_VERSION" -o "$dir/pause" "$pause_src"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$dir/Dockerfile"
  docker build -t "$pause_name" "$dir" >"$IMAGES_DIR/pause.build.log" 2>&1 ||
    { tail -20 "$IMAGES_DIR/pause.build.log"; exit 1; }
  docker save "$pause_name" -o "$IMAGES_DIR/pause.tar"
  echo "$pause_name" > "$IMAGES_DIR/.pause.stamp"
  rm -rf "$dir"
fi

# The monitoring stack kube-prometheus-stack runs (the Prometheus Operator, the config reloader it
# adds beside Prometheus and Alertmanager, and those two), since quay.io cannot be reached: each
# is one binary of ci/cluster/build.sh FROM scratch (ci/images/<binary>.Dockerfile), named as
# the chart renders it (MONITORING_IMAGES in ci/cluster/versions.sh). An image is built again
# only when its binary's stamp, its Dockerfile or its name changed.
bash "$ROOT/ci/cluster/build.sh" monitoring
for entry in "${MONITORING_IMAGES[@]}"; do
  binary="${entry%%=*}" name="${entry#*=}"
  dockerfile="$ROOT/ci/images/$binary.Dockerfile"
  stamp=$({ echo "$name"; cat "$CLUSTER_BIN/.$binary.stamp" "$dockerfile"; } | sha256sum | cut -c1-16)
  if [ "$(cat "$IMAGES_DIR/.$binary.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$IMAGES_DIR/$binary.tar" ]; then
    continue
  fi
  log "docker build $name"
  dir=$(mktemp -d)
  cp "$CLUSTER_BIN/$binary" "$dir/"
  docker build -f "$dockerfile" -t "$name" "$dir" >"$IMAGES_DIR/$binary.build.log" 2>&1 ||
    { tail -20 "$IMAGES_DIR/$binary.build.log"; exit 1; }
  rm -rf "$dir"
  docker save "$name" -o "$IMAGES_DIR/$binary.tar.part" && mv "$IMAGES_DIR/$binary.tar.part" "$IMAGES_DIR/$binary.tar"
  echo "$stamp" > "$IMAGES_DIR/.$binary.stamp"
  size=$(docker image inspect "$name" --format '{{.Size}}')
  log "$name: $((size / 1024 / 1024)) MiB"
done
echo "$IMAGES_DIR"
