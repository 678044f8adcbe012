"""Image uploads through the gateway, as clients make them:

- a 10 MB JPEG uploaded through the gateway, and the same bytes put straight into MinIO with
  boto3 (a bucket of the bench's own), alternately, UPLOAD_REPEATS times each: MB/s of each (the
  median) and the gateway's as a percentage of the direct one; the servers' CPU-ms per upload of
  each way, by process group; and what the images service's image check (inspection.inspect) of
  these bytes costs on its own, timed in this process: the part of the gateway's time that no
  transport could save; the download of the upload, bytes checked;
- 100 concurrent uploads of a 0.7 MB JPEG: wall time, latency, the errors (anything but 201), and
  each service's peak resident memory meanwhile (VmHWM of the gunicorn master and workers, reset
  first), whose sum is compared with the memory limit of the service's container in the chart
  (charts/platform/charts/<service>/values.yaml, resources.limits.memory);
- 8 concurrent uploads of a small file of a huge image (6300x6300 RGBA PNG, 150 MiB if decoded,
  just under MAX_IMAGE_PIXELS), with the images processes' memory after them: the decode budget
  keeps them from growing by what eight decodes at once would take.

Targets (architecture): a 10 MB upload in under 5 s, 100+ concurrent uploads, 128-512 MB per
service.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml
from PIL import Image

from bench.context import Bench
from bench.measure import CpuMeter
from devstack.services import memory_kib, reset_peak
from images import inspection
from images.budget import DecodeBudget
from images.config import ImagesSettings
from servicekit import config

MIB = 1024 * 1024
MB = 1_000_000
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHARTS = PROJECT_ROOT / "charts" / "platform" / "charts"
BENCH_BUCKET = "bench"
UPLOAD_REPEATS = 3
CONCURRENT_UPLOADS = 100
CONCURRENT_HUGE_UPLOADS = 8
_UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}


def run(bench: Bench) -> list[str]:
    api = bench.url("api")
    upload_url, images_url = f"{api}/api/v1/images/upload", f"{api}/api/v1/images"
    headers = {"Authorization": bench.users()[1].authorization}
    lines = [f"through the api gateway ({upload_url})"]

    large = _noise_jpeg(3000, 3000)
    figures, more_lines = _large_upload(bench, large, upload_url, images_url, headers)
    lines += more_lines

    small = _noise_jpeg(800, 800)
    concurrent, more_lines = _concurrent_uploads(bench, small, upload_url, headers)
    figures["concurrent"] = concurrent
    lines += more_lines

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
    lines.append(f"images processes after them: {_memory(bench.stack.services['images'])}")
    figures["huge_png_statuses"] = {str(status): huge_statuses.count(status) for status in set(huge_statuses)}
    bench.record("uploads", figures)
    return lines


def _large_upload(bench: Bench, large: bytes, upload_url: str, images_url: str, headers) -> tuple[dict, list]:
    s3 = bench.stack.minio.client()
    if BENCH_BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BENCH_BUCKET)
    through_gateway, direct, filename = [], [], None
    gateway_cpu, direct_cpu = _CpuTotals(bench), _CpuTotals(bench)
    for repeat in range(UPLOAD_REPEATS):
        with gateway_cpu.counting():
            started = time.perf_counter()
            answer = requests.post(
                upload_url, headers=headers, files={"file": ("large.jpg", large, "image/jpeg")}, timeout=120
            )
            through_gateway.append(time.perf_counter() - started)
        answer.raise_for_status()
        filename = answer.json()["filename"]
        with direct_cpu.counting():
            started = time.perf_counter()
            s3.put_object(
                Bucket=BENCH_BUCKET, Key=f"large-{repeat}.jpg", Body=large, ContentType="image/jpeg"
            )
            direct.append(time.perf_counter() - started)
    check_seconds = _image_check_seconds(bench, large)

    started = time.perf_counter()
    digest = hashlib.sha256()
    with requests.get(f"{images_url}/{filename}", headers=headers, stream=True, timeout=120) as download:
        download.raise_for_status()
        for chunk in download.iter_content(256 * 1024):
            digest.update(chunk)
    download_seconds = time.perf_counter() - started
    intact = digest.hexdigest() == hashlib.sha256(large).hexdigest()

    gateway_seconds, direct_seconds = statistics.median(through_gateway), statistics.median(direct)
    figures = {
        "large_upload_mb": round(len(large) / MB, 2),
        "gateway_upload_seconds": round(gateway_seconds, 3),
        "gateway_mb_per_second": round(len(large) / MB / gateway_seconds, 1),
        "direct_upload_seconds": round(direct_seconds, 3),
        "direct_mb_per_second": round(len(large) / MB / direct_seconds, 1),
        "download_seconds": round(download_seconds, 3),
        "download_intact": intact,
        "gateway_cpu_ms_per_upload": gateway_cpu.per_upload_ms(),
        "direct_cpu_ms_per_upload": direct_cpu.per_upload_ms(),
        "image_check_seconds": round(check_seconds, 3),
    }
    percent = figures["gateway_mb_per_second"] / figures["direct_mb_per_second"] * 100
    figures["ratios"] = {"gateway_to_direct_percent": round(percent, 1)}
    lines = [
        f"{len(large) / MB:.1f} MB JPEG, median of {UPLOAD_REPEATS}: through the gateway "
        f"{gateway_seconds:.2f} s ({figures['gateway_mb_per_second']:.0f} MB/s); "
        f"straight to MinIO with boto3 {direct_seconds:.2f} s ({figures['direct_mb_per_second']:.0f} MB/s); "
        f"gateway {percent:.0f} % of direct (goal at least 50 %: {'met' if percent >= 50 else 'not met'})",
        "  servers' CPU-ms per upload through the gateway: "
        f"{_cpu_text(figures['gateway_cpu_ms_per_upload'])}; "
        f"straight: {_cpu_text(figures['direct_cpu_ms_per_upload'])}",
        f"  the 50 % goal leaves the gateway {2 * direct_seconds * 1000:.0f} ms in all; the images "
        f"service's image check of these bytes alone takes {check_seconds * 1000:.0f} ms "
        "(inspection.inspect, in this process)",
        f"download {download_seconds:.2f} s ({'bytes intact' if intact else 'BYTES DIFFER'})",
        f"images processes after them: {_memory(bench.stack.services['images'])}",
    ]
    return figures, lines


class _CpuTotals:
    """The servers' CPU seconds by process group, summed over the blocks counted, per block."""

    def __init__(self, bench: Bench) -> None:
        self.groups = bench.groups()
        self.seconds: dict[str, float] = {group.name: 0.0 for group in self.groups}
        self.blocks = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        meter = CpuMeter(self.groups)
        meter.start()
        yield
        for name, used in meter.stop().items():
            self.seconds[name] += used
        self.blocks += 1

    def per_upload_ms(self) -> dict[str, float]:
        return {name: round(used * 1000 / max(self.blocks, 1), 1) for name, used in self.seconds.items()}


def _cpu_text(cpu_ms: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {ms:.0f}" for name, ms in cpu_ms.items() if ms)
    return f"{parts or 'none measurable'} ({sum(cpu_ms.values()):.0f} in all)"


def _image_check_seconds(bench: Bench, data: bytes) -> float:
    """The median wall time of the images service's check of ``data``, run here with its settings."""
    settings = config.load(ImagesSettings, {**os.environ, **bench.stack.services["images"].env})
    budget = DecodeBudget(settings.decode_memory_budget_bytes, settings.decode_wait_seconds)
    timings = []
    for _ in range(UPLOAD_REPEATS):
        started = time.perf_counter()
        inspection.inspect(io.BytesIO(data), settings.max_image_pixels, budget)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _concurrent_uploads(bench: Bench, small: bytes, upload_url: str, headers) -> tuple[dict, list]:
    services = bench.stack.services
    for service in services.values():
        for pid in [service.process.pid, *service.worker_pids()]:
            reset_peak(pid)

    def upload_one(_: int) -> tuple[int | str, float]:
        began = time.perf_counter()
        try:
            status = requests.post(
                upload_url, headers=headers, files={"file": ("small.jpg", small, "image/jpeg")}, timeout=120
            ).status_code
        except requests.RequestException as error:
            status = type(error).__name__
        return status, time.perf_counter() - began

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_UPLOADS) as pool:
        results = list(pool.map(upload_one, range(CONCURRENT_UPLOADS)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for _, seconds in results)
    statuses = [status for status, _ in results]
    errors = sum(status != 201 for status in statuses)
    figures = {
        "uploads": CONCURRENT_UPLOADS,
        "upload_mb": round(len(small) / MB, 2),
        "errors": errors,
        "statuses": {str(status): statuses.count(status) for status in set(statuses)},
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(CONCURRENT_UPLOADS / wall, 1),
        "latency_p50_seconds": round(statistics.median(latencies), 2),
        "latency_p95_seconds": round(latencies[int(len(latencies) * 0.95) - 1], 2),
        "latency_max_seconds": round(latencies[-1], 2),
        "memory": {},
    }
    lines = [
        f"{CONCURRENT_UPLOADS} concurrent uploads of {len(small) / MB:.2f} MB: {wall:.2f} s wall, "
        f"{figures['requests_per_second']:.1f}/s, latency p50 {figures['latency_p50_seconds']:.2f} s, "
        f"p95 {figures['latency_p95_seconds']:.2f} s, max {figures['latency_max_seconds']:.2f} s, "
        f"{errors} errors (goal zero), statuses {figures['statuses']}"
    ]
    for name, service in services.items():
        master = memory_kib(service.process.pid)["VmHWM"] / 1024
        workers = [memory_kib(pid)["VmHWM"] / 1024 for pid in service.worker_pids()]
        total, limit = master + sum(workers), memory_limit_mib(name)
        verdict = "within limit" if total <= limit else "OVER"
        figures["memory"][name] = {
            "peak_rss_mib_master": round(master, 1),
            "peak_rss_mib_workers_max": round(max(workers), 1),
            "peak_rss_mib_total": round(total, 1),
            "limit_mib": limit,
        }
        lines.append(
            f"  {name} peak RSS meanwhile: workers {', '.join(f'{worker:.0f}' for worker in workers)} MiB, "
            f"master {master:.0f} MiB; {total:.0f} MiB in all vs the container's limit {limit:.0f} MiB: "
            f"{verdict}"
        )
    return figures, lines


def memory_limit_mib(service: str) -> float:
    """resources.limits.memory of the service's chart, in MiB (Kubernetes' Ki, Mi or Gi)."""
    values = yaml.safe_load((CHARTS / service / "values.yaml").read_text())
    quantity = str(values["resources"]["limits"]["memory"])
    for suffix, mebibytes in _UNITS.items():
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * mebibytes
    raise ValueError(f"{service}'s memory limit {quantity!r} is not in Ki, Mi or Gi")


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
