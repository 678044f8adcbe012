"""Image uploads: one 10 MB upload and download, then 100 concurrent uploads, then 8 concurrent
uploads of a small file of a huge image (6300x6300 RGBA PNG, 150 MiB if decoded), with the
memory of the images service's gunicorn processes (peak resident set, VmHWM) after each.

Requests go through the api gateway, as clients' do, when the stack runs it; otherwise
straight to the images service. Targets (architecture): a 10 MB upload in under 5 s, 100+
concurrent uploads, 128-512 MB per service.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from devstack.services import memory_kib

MIB = 1024 * 1024
CONCURRENT_UPLOADS = 100
CONCURRENT_HUGE_UPLOADS = 8


def run(stack) -> list[str]:
    via, upload_url, images_url = _entry_point(stack)
    headers = _login(stack)
    lines = [f"through {via} ({upload_url})"]
    images_service = stack.services["images"]

    large = _noise_jpeg(3000, 3000)
    started = time.perf_counter()
    response = requests.post(
        upload_url,
        headers=headers,
        files={"file": ("large.jpg", large, "image/jpeg")},
        timeout=120,
    )
    upload_seconds = time.perf_counter() - started
    response.raise_for_status()
    filename = response.json()["filename"]
    started = time.perf_counter()
    digest = hashlib.sha256()
    with requests.get(f"{images_url}/{filename}", headers=headers, stream=True, timeout=120) as download:
        download.raise_for_status()
        for chunk in download.iter_content(256 * 1024):
            digest.update(chunk)
    download_seconds = time.perf_counter() - started
    intact = digest.hexdigest() == hashlib.sha256(large).hexdigest()
    lines.append(
        f"{len(large) / MIB:.1f} MiB JPEG: upload {upload_seconds:.2f} s, download "
        f"{download_seconds:.2f} s ({'bytes intact' if intact else 'BYTES DIFFER'})"
    )
    lines.append(f"images processes after it: {_memory(images_service)}")

    small = _noise_jpeg(800, 800)

    def upload_one(_: int) -> tuple[int, float]:
        began = time.perf_counter()
        answer = requests.post(
            upload_url,
            headers=headers,
            files={"file": ("small.jpg", small, "image/jpeg")},
            timeout=120,
        )
        return answer.status_code, time.perf_counter() - began

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_UPLOADS) as pool:
        results = list(pool.map(upload_one, range(CONCURRENT_UPLOADS)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for _, seconds in results)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    statuses = {status: sum(1 for s, _ in results if s == status) for status in {s for s, _ in results}}
    lines.append(
        f"{CONCURRENT_UPLOADS} concurrent uploads of {len(small) / MIB:.2f} MiB: {wall:.2f} s wall, "
        f"{CONCURRENT_UPLOADS / wall:.1f}/s, latency p50 {statistics.median(latencies):.2f} s, "
        f"p95 {p95:.2f} s, max {latencies[-1]:.2f} s, statuses {statuses}"
    )
    lines.append(f"images processes after them: {_memory(images_service)}")

    huge = _flat_png(6300, 6300)

    def upload_huge(_: int) -> int:
        files = {"file": ("huge.png", huge, "image/png")}
        return requests.post(upload_url, headers=headers, files=files, timeout=120).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_HUGE_UPLOADS) as pool:
        huge_statuses = list(pool.map(upload_huge, range(CONCURRENT_HUGE_UPLOADS)))
    lines.append(
        f"{CONCURRENT_HUGE_UPLOADS} concurrent uploads of a {len(huge) / 1024:.0f} KB 6300x6300 PNG: "
        f"{time.perf_counter() - started:.2f} s, statuses {sorted(huge_statuses)}"
    )
    lines.append(f"images processes after them: {_memory(images_service)}")
    return lines


def _entry_point(stack) -> tuple[str, str, str]:
    """(what is called, its upload URL, the URL its images live under)."""
    if "api" in stack.services:
        api = stack.services["api"].url
        return "the api gateway", f"{api}/api/v1/images/upload", f"{api}/api/v1/images"
    images = stack.services["images"].url
    return "the images service directly", f"{images}/upload", f"{images}/images"


def _login(stack) -> dict[str, str]:
    auth = stack.services["auth"].url
    username, password = f"bench{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    requests.post(f"{auth}/register", json={"username": username, "password": password}, timeout=30)
    answer = requests.post(f"{auth}/login", json={"username": username, "password": password}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _noise_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 20, 30, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _memory(service) -> str:
    """Peak and current resident memory of the gunicorn master and each worker."""
    parts = []
    for role, pid in [("master", service.process.pid), *(("worker", p) for p in service.worker_pids())]:
        memory = memory_kib(pid)
        parts.append(f"{role} {pid} peak {memory['VmHWM'] / 1024:.0f} MiB (now {memory['VmRSS'] / 1024:.0f})")
    return "; ".join(parts)
