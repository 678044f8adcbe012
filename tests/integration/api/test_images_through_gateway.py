"""End to end through the gateway: the api under gunicorn, the real auth and the real images
service on MinIO. A client needs nothing but the gateway's address."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

BIG_IMAGE_BYTES = 10 * 1024 * 1024


def png(width: int = 8, height: int = 8, noise: bool = False) -> bytes:
    pixels = os.urandom(width * height * 3) if noise else bytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, format="PNG", compress_level=0)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """A PNG of random pixels, stored uncompressed: a little over 10 MB."""
    side = int((BIG_IMAGE_BYTES / 3) ** 0.5) + 1
    return png(side, side, noise=True)


def upload(gateway, headers: dict, content: bytes, name: str = "photo.png") -> requests.Response:
    return requests.post(
        f"{gateway.url}/api/v1/images/upload",
        headers=headers,
        timeout=60,
        files={"file": (name, content, "image/png")},
    )


def test_a_user_uploads_lists_downloads_and_deletes_an_image_through_the_gateway(gateway, gateway_account):
    _, headers = gateway_account("alice")
    content = png()

    created = upload(gateway, headers, content)
    assert created.status_code == 201, created.text
    image = created.json()
    assert image["content_type"] == "image/png"
    assert image["size"] == len(content)
    assert image["sha256"] == hashlib.sha256(content).hexdigest()
    assert created.headers["Location"] == f"/api/v1/images/{image['filename']}"

    listed = requests.get(f"{gateway.url}/api/v1/images", headers=headers, timeout=10)
    assert [item["filename"] for item in listed.json()["items"]] == [image["filename"]]
    stats = requests.get(f"{gateway.url}/api/v1/images/stats", headers=headers, timeout=10).json()
    assert (stats["count"], stats["total_bytes"]) == (1, len(content))

    downloaded = requests.get(f"{gateway.url}/api/v1/images/{image['filename']}", headers=headers, timeout=10)
    assert downloaded.status_code == 200
    assert downloaded.content == content
    assert downloaded.headers["Content-Type"] == "image/png"
    assert downloaded.headers["Content-Length"] == str(len(content))
    assert downloaded.headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in downloaded.headers
    unchanged = requests.get(
        f"{gateway.url}/api/v1/images/{image['filename']}",
        headers={**headers, "If-None-Match": downloaded.headers["ETag"]},
        timeout=10,
    )
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == downloaded.headers["ETag"]

    deleted = requests.delete(f"{gateway.url}/api/v1/images/{image['filename']}", headers=headers, timeout=10)
    assert deleted.status_code == 204
    gone = requests.get(f"{gateway.url}/api/v1/images/{image['filename']}", headers=headers, timeout=10)
    assert gone.status_code == 404


def test_another_users_image_is_invisible_and_undeletable_through_the_gateway(gateway, gateway_account):
    _, alice = gateway_account("alice")
    _, bob = gateway_account("bob")
    filename = upload(gateway, alice, png()).json()["filename"]

    assert requests.get(f"{gateway.url}/api/v1/images/{filename}", headers=bob, timeout=10).status_code == 404
    assert (
        requests.delete(f"{gateway.url}/api/v1/images/{filename}", headers=bob, timeout=10).status_code == 404
    )
    assert requests.get(f"{gateway.url}/api/v1/images", headers=bob, timeout=10).json()["items"] == []
    assert (
        requests.get(f"{gateway.url}/api/v1/images/{filename}", headers=alice, timeout=10).status_code == 200
    )


def test_the_images_list_is_paged_like_the_posts_list_and_refuses_unknown_parameters(
    gateway, gateway_account
):
    _, headers = gateway_account()
    names = [upload(gateway, headers, png(4 + i, 4)).json()["filename"] for i in range(3)]

    def page(query: str) -> dict:
        response = requests.get(f"{gateway.url}/api/v1/images?{query}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    first, last = page("limit=2"), page("limit=2&offset=2")
    assert [item["filename"] for item in first["items"] + last["items"]] == names[::-1]
    assert {key: first[key] for key in ("limit", "offset", "next_offset")} == {
        "limit": 2,
        "offset": 0,
        "next_offset": 2,
    }
    assert {key: last[key] for key in ("limit", "offset", "next_offset")} == {
        "limit": 2,
        "offset": 2,
        "next_offset": None,
    }
    assert set(first) == set(last) == {"items", "limit", "offset", "next_offset"}
    misspelt = requests.get(f"{gateway.url}/api/v1/images?limt=2", headers=headers, timeout=10)
    assert misspelt.status_code == 400
    assert misspelt.headers["Content-Type"] == "application/problem+json"


def test_images_rejections_pass_through_as_problem_json(gateway, gateway_account):
    _, headers = gateway_account()

    not_an_image = upload(gateway, headers, b"just some text", name="fake.png")
    no_file = requests.post(
        f"{gateway.url}/api/v1/images/upload",
        headers=headers,
        timeout=10,
        files={"other": ("x.png", png(), "image/png")},
    )
    no_token = upload(gateway, {}, png())

    assert not_an_image.status_code == 415
    assert no_file.status_code == 400
    assert no_token.status_code == 401
    for response in (not_an_image, no_file, no_token):
        assert response.headers["Content-Type"] == "application/problem+json"


def test_concurrent_10mb_images_stream_through_the_gateway_with_little_memory(
    gateway, gateway_account, big_png
):
    _, headers = gateway_account()
    stored = upload(gateway, headers, big_png).json()
    digest = hashlib.sha256(big_png).hexdigest()

    def download() -> str:
        sha = hashlib.sha256()
        with requests.get(
            f"{gateway.url}/api/v1/images/{stored['filename']}", headers=headers, stream=True, timeout=60
        ) as response:
            assert response.status_code == 200
            for chunk in response.iter_content(256 * 1024):
                sha.update(chunk)
        return sha.hexdigest()

    rss_before = gateway.rss_kib()
    gateway.reset_peaks()
    with ThreadPoolExecutor(8) as pool:
        uploads = [pool.submit(upload, gateway, headers, big_png) for _ in range(4)]
        downloads = [pool.submit(download) for _ in range(4)]
        uploaded = [future.result() for future in uploads]
        downloaded = [future.result() for future in downloads]
    peaks = gateway.peak_rss_kib()

    assert all(response.status_code == 201 and response.json()["sha256"] == digest for response in uploaded)
    assert downloaded == [digest] * 4
    assert peaks.keys() == rss_before.keys()
    growth_kib = sum(peaks[pid] - rss_before[pid] for pid in peaks)
    in_flight_kib = 8 * len(big_png) // 1024
    print(
        f"\napi workers, 4 uploads + 4 downloads of a {len(big_png) / 2**20:.1f} MiB image via real images: "
        f"peak growth {growth_kib / 1024:.1f} MiB (bodies in flight: {in_flight_kib / 1024:.0f} MiB)"
    )
    assert growth_kib < in_flight_kib / 3
