"""The hashed lock files in requirements/ are what `make lock` writes from setup.cfg today, and
each image and the venv install from them exactly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.readme import readme_has

REQUIREMENTS = PROJECT_ROOT / "requirements"
SERVICES = ("auth", "api", "images")
LOCKS = ("build", "dev", *SERVICES)
STALE = "requirements/ no longer matches setup.cfg: run `make lock` and commit requirements/"


def pins(lock: str) -> dict[str, str]:
    text = (REQUIREMENTS / f"{lock}.txt").read_text()
    return dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", text, re.M))


@pytest.fixture(scope="module")
def relocked(tmp_path_factory) -> Path:
    """`make lock`, as the README gives it, run on a copy of what it reads, the committed locks
    included: uv keeps their versions where setup.cfg still allows them, so only a change to
    setup.cfg (or a hand edit) makes a difference, not a release upstream."""
    copy = tmp_path_factory.mktemp("relock")
    for name in ("Makefile", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, copy / name)
    shutil.copytree(PROJECT_ROOT / "ci", copy / "ci")
    shutil.copytree(REQUIREMENTS, copy / "requirements")
    (copy / "src").mkdir()  # setup.cfg's package_dir, for the project's metadata
    (copy / ".venv").symlink_to(sys.prefix)  # this venv's uv and Python
    command = readme_has("make lock").split()
    run = subprocess.run(command, cwd=copy, capture_output=True, text=True)
    if run.returncode != 0:
        # No index reachable: uv's cache of it still answers for versions it has seen.
        offline = {**os.environ, "UV_OFFLINE": "1"}
        run = subprocess.run(command, cwd=copy, env=offline, capture_output=True, text=True)
    assert run.returncode == 0, f"make lock failed:\n{run.stderr}"
    return copy / "requirements"


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_is_what_make_lock_writes_from_setup_cfg(relocked, lock):
    fresh = (relocked / f"{lock}.txt").read_text()
    assert (REQUIREMENTS / f"{lock}.txt").read_text() == fresh, STALE


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_its_hashes(lock):
    text = (REQUIREMENTS / f"{lock}.txt").read_text()
    requirements = re.findall(r"^\S.*?(?=^\S|\Z)", text, re.M | re.S)
    requirements = [entry for entry in requirements if not entry.startswith("#")]
    assert requirements
    for entry in requirements:
        assert re.match(r"[a-z0-9._-]+==\S+ \\", entry), entry
        assert "--hash=sha256:" in entry, entry


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_lock_pins_the_versions_the_tests_run_against(service):
    dev = pins("dev")
    assert {name: dev.get(name) for name in pins(service)} == pins(service)


def test_auth_carries_neither_boto3_nor_pillow():
    assert not {"boto3", "botocore", "pillow"} & pins("auth").keys()
    assert {"boto3", "pillow"} <= pins("images").keys()


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_its_own_lock_with_hashes_then_the_project_alone(service):
    dockerfile = (PROJECT_ROOT / "src" / service / "Dockerfile").read_text()
    assert f"--require-hashes -r requirements/{service}.txt" in dockerfile
    assert "--require-hashes -r requirements/build.txt" in dockerfile
    assert re.search(r"pip install [^\n]*--no-deps /build/dist/\*\.whl", dockerfile)
    assert not re.search(r"pip install [^\n]*\"?\.\[", dockerfile), "an extra installed unlocked"
