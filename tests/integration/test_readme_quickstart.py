"""The README's quick start, run as a developer runs it: `make run`, then the README's curl
commands against it, exactly as written, and their answers checked."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from devstack.services import METRICS_PORTS, SERVICE_PORTS
from devstack.wait import WaitAborted, wait_until
from tests.conftest import PROJECT_ROOT
from tests.readme import readme_blocks_after, readme_has


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def make_run():
    """`make run` in a state folder of its own, until the module's tests are done."""
    busy = [port for port in [*SERVICE_PORTS.values(), *METRICS_PORTS.values()] if port_in_use(port)]
    assert not busy, f"ports {busy} are taken: is a `make run` already running? Stop it first."
    # Not under pytest's root-only temporary folder: PostgreSQL runs as the postgres user.
    state = Path(tempfile.mkdtemp(prefix="platform-make-run-"))
    state.chmod(0o755)
    log = (state / "make-run.log").open("wb")
    process = subprocess.Popen(
        readme_has("make run").split(),
        cwd=PROJECT_ROOT,
        env={**os.environ, "DEVSTACK_STATE_DIR": str(state / "run")},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def api_ready() -> bool:
        if process.poll() is not None:
            output = (state / "make-run.log").read_text()
            raise WaitAborted(f"make run exited with {process.returncode}: {output}")
        return requests.get("http://127.0.0.1:3002/ready", timeout=2).status_code == 200

    try:
        wait_until(api_ready, timeout=240, interval=0.5, message="make run's api to be ready")
        yield state
    finally:
        # Ctrl-C, as the README says: the stack stops its servers and services.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def run_block(block: str, cwd) -> list[dict]:
    """Run a README block with bash, and the JSON documents its commands printed, in order."""
    result = subprocess.run(["bash", "-e", "-c", block], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    documents, text, decoder = [], result.stdout.strip(), json.JSONDecoder()
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    return documents


def test_the_readme_quick_start_works_against_make_run(make_run):
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(photo, "JPEG")
    (make_run / "photo.jpg").write_bytes(photo.getvalue())
    journey, paging = readme_blocks_after("make run")

    registered, first, second, uploaded, listing = run_block(journey, make_run)
    assert registered["username"] == "alice"
    assert (first["title"], second["title"]) == ("hello", "again")
    assert uploaded["content_type"] == "image/jpeg"
    assert [post["title"] for post in listing["items"]] == ["again", "hello"]

    newest, before = run_block(paging, make_run)
    assert [post["title"] for post in newest["items"]] == ["again"]
    assert newest["next_cursor"]
    assert [post["title"] for post in before["items"]] == ["hello"]
    assert before["next_cursor"] is None
