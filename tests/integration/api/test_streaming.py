"""10 MB bodies through the gateway under real gunicorn, both ways, with its memory measured.

The api runs under gunicorn (2 workers x 4 threads) in front of the stand-in upstream, which
hashes what it receives and streams a known pattern back. The workers' peak resident memory
(VmHWM, reset before the transfers) must stay far below body size x concurrent transfers.
"""

from __future__ import annotations

import hashlib
import http.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.api.upstream_app import pattern_bytes, sized_name

BODY_BYTES = 10 * 1024 * 1024
CONCURRENT_UPLOADS = 4
CONCURRENT_DOWNLOADS = 4
BOUNDARY = "gateway-test-boundary"


@pytest.fixture(scope="module")
def multipart_file(tmp_path_factory) -> tuple[Path, str]:
    """A 10 MB multipart/form-data body on disk, and the sha256 of the file part inside it."""
    path = tmp_path_factory.mktemp("upload") / "body"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
        )
        for chunk in pattern_bytes(BODY_BYTES):
            out.write(chunk)
        out.write(f"\r\n--{BOUNDARY}--\r\n".encode())
    with path.open("rb") as body:
        while chunk := body.read(1 << 20):
            digest.update(chunk)
    return path, digest.hexdigest()


def expected_pattern_digest(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in pattern_bytes(size):
        digest.update(chunk)
    return digest.hexdigest()


def upload(url: str, headers: dict, body_path: Path) -> dict:
    with body_path.open("rb") as body:
        response = requests.post(
            f"{url}/api/v1/images/upload",
            data=body,
            timeout=60,
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    assert response.status_code == 201, response.text
    return response.json()


def download(url: str, headers: dict, size: int) -> tuple[requests.Response, str, int]:
    digest, received = hashlib.sha256(), 0
    with requests.get(
        f"{url}/api/v1/images/{sized_name(size)}", headers=headers, stream=True, timeout=60
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_content(256 * 1024):
            digest.update(chunk)
            received += len(chunk)
    return response, digest.hexdigest(), received


def test_concurrent_10mb_uploads_and_downloads_stream_through_with_little_memory(
    live_api, live_account, multipart_file
):
    body_path, body_digest = multipart_file
    _, headers = live_account()
    # Warm every worker and thread (imports, pools, the token cache) before measuring.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: download(live_api.url, headers, 1024), range(16)))

    rss_before = live_api.rss_kib()
    assert len(rss_before) == 2
    peaks_reset = live_api.reset_peaks()

    with ThreadPoolExecutor(CONCURRENT_UPLOADS + CONCURRENT_DOWNLOADS) as pool:
        uploads = [pool.submit(upload, live_api.url, headers, body_path) for _ in range(CONCURRENT_UPLOADS)]
        downloads = [
            pool.submit(download, live_api.url, headers, BODY_BYTES) for _ in range(CONCURRENT_DOWNLOADS)
        ]
        upload_results = [future.result() for future in uploads]
        download_results = [future.result() for future in downloads]

    peaks = live_api.peak_rss_kib()
    assert peaks.keys() == rss_before.keys()
    for seen in upload_results:
        assert seen["received_bytes"] == body_path.stat().st_size
        assert seen["sha256"] == body_digest
        assert seen["content_length"] == str(body_path.stat().st_size)
    expected_digest = expected_pattern_digest(BODY_BYTES)
    for response, digest, received in download_results:
        assert received == BODY_BYTES
        assert digest == expected_digest
        assert response.headers["Content-Length"] == str(BODY_BYTES)

    # Growth of each worker's peak over its resident size just before the transfers.
    growth_kib = sum(peaks[pid] - rss_before[pid] for pid in peaks)
    in_flight_kib = (CONCURRENT_UPLOADS + CONCURRENT_DOWNLOADS) * BODY_BYTES // 1024
    print(
        f"\napi workers during {CONCURRENT_UPLOADS} uploads + {CONCURRENT_DOWNLOADS} downloads of "
        f"{BODY_BYTES // 2**20} MiB (peak reset: {peaks_reset}):"
    )
    for pid in peaks:
        print(
            f"  worker {pid}: RSS before {rss_before[pid] / 1024:.1f} MiB, "
            f"peak during {peaks[pid] / 1024:.1f} MiB"
        )
    print(
        f"  peak growth, all workers: {growth_kib / 1024:.1f} MiB "
        f"(bodies in flight: {in_flight_kib / 1024:.0f} MiB)"
    )
    # What remains is per transfer, not per byte: gunicorn reads an upload ahead up to 1 MiB per
    # recv() and the copies of that buffer, plus 64 KiB chunks on their way, per thread.
    assert growth_kib < in_flight_kib / 3


def test_a_chunked_upload_without_content_length_is_streamed_chunked(live_api, live_account):
    _, headers = live_account()

    def chunks():
        yield from pattern_bytes(3 * 1024 * 1024)

    response = requests.post(
        f"{live_api.url}/api/v1/images/upload",
        data=chunks(),
        timeout=60,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )

    assert response.status_code == 201, response.text
    seen = response.json()
    assert seen["received_bytes"] == 3 * 1024 * 1024
    assert seen["sha256"] == expected_pattern_digest(3 * 1024 * 1024)
    assert seen["transfer_encoding"] == "chunked"


def test_an_upload_larger_than_the_limit_is_refused_before_its_body_is_read(live_api, live_account):
    _, headers = live_account()
    connection = http.client.HTTPConnection("127.0.0.1", live_api.port, timeout=10)
    connection.putrequest("POST", "/api/v1/images/upload")
    connection.putheader("Authorization", headers["Authorization"])
    connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    connection.putheader("Content-Length", str(500 * 1024 * 1024))
    connection.endheaders()

    response = connection.getresponse()

    assert response.status == 413
    assert response.getheader("Content-Type") == "application/problem+json"
    connection.close()


def test_the_live_gateway_echoes_the_request_id_and_sends_no_hop_by_hop_headers(live_api, live_account):
    _, headers = live_account()
    response = requests.get(
        f"{live_api.url}/api/v1/images/{sized_name(2048)}",
        timeout=10,
        headers={**headers, "X-Request-ID": "trace-me-1", "Connection": "keep-alive"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-me-1"
    assert response.headers["ETag"] == '"pattern-2048"'
    assert "Transfer-Encoding" not in response.headers
    assert "X-Internal-Node" not in response.headers


def test_upstream_metrics_add_up_across_gunicorn_workers(live_api, live_account):
    _, headers = live_account()
    for _ in range(6):
        assert requests.get(f"{live_api.url}/api/v1/posts/my", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{live_api.url}/ready", timeout=10).status_code == 200

    text = requests.get(f"{live_api.metrics_url}/metrics", timeout=10).text

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    # One verification per worker that saw the token at most; the rest came from the caches.
    assert value('api_token_cache_total{result="hit"}') >= 4
    assert (
        value('api_upstream_requests_total{outcome="success",target="auth"}') >= 3
    )  # register, login, verify
    assert value('api_upstream_request_duration_seconds_count{target="auth"}') >= 3
    for dependency in ("database", "auth", "images"):
        assert value(f'dependency_up{{dependency="{dependency}"}}') == 1
