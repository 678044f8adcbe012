#!/usr/bin/env bash
# Writes the hashed lock files (`make lock`): requirements/<service>.txt for each service image,
# holding setup.cfg's common dependencies and that service's extra only; requirements/dev.txt
# for the development venv (every extra); requirements/build.txt, what builds the project itself
# (pyproject.toml's build-system requires), so nothing installed floats. Run it after changing
# setup.cfg's dependencies, and commit requirements/.
#
# Versions already in a lock are kept where setup.cfg still allows them (uv reads the existing
# file as preferences), so adding one dependency moves nothing else; `UPGRADE=1 make lock`
# takes the newest versions of everything instead. The service locks are constrained by dev.txt,
# so an image runs exactly the versions the tests ran against.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# uv comes with the test tools (dev.txt), which `make test` or `make tools` installs; not
# installed from here, since a stale dev.txt is what this script is run to fix.
[ -x .venv/bin/uv ] || { echo "lock: .venv/bin/uv missing: run \`make tools\` first" >&2; exit 1; }
mkdir -p requirements

# The images run Python 3.11 on Debian 12 (glibc 2.36), like this machine; resolving for that
# target explicitly gives the same locks wherever `make lock` runs.
compile() {
  local out="$1"; shift
  .venv/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
    --custom-compile-command "make lock" ${UPGRADE:+--upgrade} --output-file "$out" "$@"
}

.venv/bin/python -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' |
  compile "requirements/build.txt" -
compile "requirements/dev.txt" setup.cfg --extra auth --extra api --extra images --extra test
for service in auth api images; do
  compile "requirements/$service.txt" setup.cfg --extra "$service" --constraints "requirements/dev.txt"
done
