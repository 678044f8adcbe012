"""The database fails after an upload's object was written: nothing is left that a user can see,
and whatever a crash leaves behind, the reconcile removes."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import images
from devstack.services import ServiceProcess
from devstack.wait import free_port, wait_until
from images.config import ImagesSettings
from servicekit import config
from tests.integration.conftest import CONNECT_TIMEOUT_SECONDS, assert_503_within_connect_timeout
from tests.integration.images.conftest import image_bytes


def test_a_connection_lost_at_the_final_commit_gives_503_and_leaves_neither_row_nor_object(
    upload, alice, commit_gate, stored, run_reconcile
):
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(upload, alice, image_bytes("PNG"))
        backend = commit_gate.waiting_upload()
        rows, keys = stored()
        assert [row["status"] for row in rows] == ["pending"] and len(keys) == 1
        commit_gate.cut_connection(backend)
        response = pending.result(timeout=30)

    assert response.status_code == 503
    assert response.get_json()["type"].endswith("/dependency-unavailable")
    assert response.headers["Retry-After"] == "5"
    assert stored() == ([], [])
    assert run_reconcile(grace=datetime.timedelta(0), fix=False).findings == []


@pytest.fixture
def images_service(images_environ, clean_bucket):
    service = ServiceProcess("images", free_port(), images_environ, workers=1).start()
    yield service
    service.stop()


def kill_all(service: ServiceProcess) -> None:
    """SIGKILL the master and its workers: no cleanup code gets to run."""
    workers = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True)
    for pid in [*map(int, workers.stdout.split()), service.process.pid]:
        os.kill(pid, signal.SIGKILL)
    service.process.wait(timeout=10)


def test_a_crash_between_object_and_commit_leaves_leftovers_the_reconcile_removes(
    images_service, alice, commit_gate, stored, run_reconcile
):
    def post() -> None:
        files = {"file": ("a.png", image_bytes("PNG"), "image/png")}
        with contextlib.suppress(requests.ConnectionError):  # the server is killed mid-request
            requests.post(f"{images_service.url}/upload", headers=alice, files=files, timeout=30)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(post)
        backend = commit_gate.waiting_upload()
        kill_all(images_service)
    commit_gate.open()
    wait_until(
        lambda: commit_gate.backend_gone(backend), timeout=30, message="the dead worker's session to end"
    )

    rows, keys = stored()
    assert [row["status"] for row in rows] == ["pending"]
    assert keys == [rows[0]["object_key"]]

    report = run_reconcile(grace=datetime.timedelta(0), fix=True)

    assert [(finding.kind, finding.has_object) for finding in report.findings] == [("stale_pending", True)]
    assert stored() == ([], [])


@pytest.fixture
def final_update_finds_nothing(postgres):
    """A trigger makes the 'pending -> committed' update change no row, as if the row were gone."""
    admin = postgres.connect(database="image_db")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_skip_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RETURN NULL; END $$;
            CREATE TRIGGER test_skip_commit BEFORE UPDATE ON images FOR EACH ROW
            WHEN (NEW.status = 'committed') EXECUTE FUNCTION test_skip_commit();
        """)
    yield
    with admin.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_skip_commit ON images; DROP FUNCTION test_skip_commit()")
    admin.close()


def test_an_upload_whose_row_cannot_be_marked_committed_answers_503_and_leaves_nothing(
    upload, alice, final_update_finds_nothing, stored
):
    response = upload(alice, image_bytes("PNG"))

    assert response.status_code == 503
    assert response.get_json()["type"].endswith("/upload-interrupted")
    assert stored() == ([], [])


def test_a_database_that_never_completes_the_connect_gives_503_within_the_connect_timeout(
    unanswering_database_url, images_environ, alice
):
    environ = {
        **images_environ,
        "DATABASE_URL": unanswering_database_url,
        "DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
    }
    client = images.create_app(config.load(ImagesSettings, environ)).test_client()

    listing = assert_503_within_connect_timeout(
        "images GET /images", lambda: client.get("/images", headers=alice)
    )
    ready = assert_503_within_connect_timeout(
        "images GET /ready", lambda: client.get("/ready"), waits_for_connect=False
    )

    assert listing.get_json()["type"].endswith("/dependency-unavailable")
    assert ready.get_json()["checks"]["database"]["status"] == "unavailable"
    assert ready.get_json()["checks"]["object_store"]["status"] == "ok"


def test_a_read_without_a_valid_token_is_refused_before_any_database_connection(
    unanswering_database_url, images_environ
):
    """A request the token check refuses never takes a pooled connection: a flood of them cannot
    hold the pool, and an outage does not turn their 401 into a 503."""
    environ = {
        **images_environ,
        "DATABASE_URL": unanswering_database_url,
        "DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
    }
    client = images.create_app(config.load(ImagesSettings, environ)).test_client()
    started = time.monotonic()

    for path in ("/images", "/images/stats", "/images/a.png"):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.get_json())

    assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS
