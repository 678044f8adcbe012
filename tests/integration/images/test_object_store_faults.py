"""The object store stops or hangs: uploads fail fast with 503, leave no row, and recover alone."""

from __future__ import annotations

import datetime
import io
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack.wait import wait_until
from servicekit.metrics import exposition
from tests.integration.images.conftest import bucket_keys, image_bytes, s3_client

FAIL_FAST_SECONDS = 5
# A frozen store accepts connections and never answers. Each of the 2 attempts waits 1 s for
# "100 Continue" (botocore's fixed wait before sending the body) plus the 1 s read timeout,
# with up to 1 s of backoff between them: 5 s at worst, plus slack for a loaded machine.
FROZEN_STORE_SECONDS = 6.5


@pytest.fixture
def client(fragile_images_app, clean_image_rows, own_s3):
    return fragile_images_app.test_client()


def post_image(client, headers, data: bytes) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post(
        "/upload",
        headers=headers,
        data={"file": (io.BytesIO(data), "a.jpg")},
        content_type="multipart/form-data",
    )
    return response.status_code, time.monotonic() - started


def test_uploads_while_the_object_store_stops_fail_fast_and_recover_without_a_restart(
    client, own_minio, alice, stored, run_reconcile
):
    fragile_images_app = client.application
    data = image_bytes("JPEG", size=(300, 200), noise=True)
    results: list[tuple[int, float]] = []
    stop = threading.Event()

    def keep_uploading() -> None:
        own_client = fragile_images_app.test_client()
        while not stop.is_set():
            results.append(post_image(own_client, alice, data))

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(keep_uploading)
        wait_until(lambda: sum(status == 201 for status, _ in results) >= 8, timeout=30, message="uploads")
        own_minio.stop()
        wait_until(lambda: sum(status == 503 for status, _ in results) >= 8, timeout=30, message="503s")
        stop.set()

    put_errors = re.search(
        r'^images_object_store_errors_total\{operation="put"\} (\S+)$',
        exposition().decode(),
        re.M,
    )
    statuses = {status for status, _ in results}
    slowest_failure = max(seconds for status, seconds in results if status == 503)
    print(f"\nobject store stopped: {len(results)} uploads, slowest 503 after {slowest_failure:.2f}s")
    assert statuses == {201, 503}
    assert slowest_failure < FAIL_FAST_SECONDS
    assert float(put_errors.group(1)) >= 8
    rows, _ = stored()
    assert {row["status"] for row in rows} == {"committed"}
    assert len(rows) == sum(status == 201 for status, _ in results)
    assert client.get("/ready").status_code == 503

    own_minio.start()

    wait_until(lambda: post_image(client, alice, data)[0] == 201, timeout=30, message="uploads to work again")
    assert client.get("/ready").status_code == 200
    # An object whose PUT landed just as the store went down has no row; the reconcile removes it.
    report = run_reconcile(grace=datetime.timedelta(0), fix=True, app=fragile_images_app)
    assert {finding.kind for finding in report.findings} <= {"orphan_object"}
    rows, _ = stored()
    assert bucket_keys(s3_client(own_minio)) == sorted(row["object_key"] for row in rows)


def test_an_object_store_that_hangs_gives_503_within_seconds_and_no_row(client, own_minio, alice, image_rows):
    data = image_bytes("PNG")
    assert post_image(client, alice, data)[0] == 201
    os.kill(own_minio.process.pid, signal.SIGSTOP)
    try:
        status, seconds = post_image(client, alice, data)
        ready = client.get("/ready").status_code
    finally:
        os.kill(own_minio.process.pid, signal.SIGCONT)

    print(f"\nobject store frozen: upload answered {status} after {seconds:.2f}s")
    assert status == 503
    assert seconds < FROZEN_STORE_SECONDS
    assert ready == 503
    assert len(image_rows()) == 1
    wait_until(lambda: post_image(client, alice, data)[0] == 201, timeout=30, message="uploads to work again")


def test_downloads_and_deletes_answer_503_while_the_store_is_down_and_the_image_survives(
    client, own_minio, alice, own_s3
):
    body = client.post(
        "/upload",
        headers=alice,
        data={"file": (io.BytesIO(image_bytes("GIF")), "a.gif")},
        content_type="multipart/form-data",
    ).get_json()
    own_minio.stop()
    try:
        download = client.get(f"/images/{body['filename']}", headers=alice)
        delete = client.delete(f"/images/{body['filename']}", headers=alice)
        listed = client.get("/images", headers=alice).get_json()["items"]
    finally:
        own_minio.start()

    assert (download.status_code, delete.status_code) == (503, 503)
    assert delete.headers["Retry-After"]
    assert [item["filename"] for item in listed] == [body["filename"]]
    # The failed delete changed nothing, so retrying it works.
    assert client.delete(f"/images/{body['filename']}", headers=alice).status_code == 204
    assert bucket_keys(own_s3) == []
