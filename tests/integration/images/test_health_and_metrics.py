"""Probes and metrics of the images service."""

from __future__ import annotations

import re

from servicekit.metrics import exposition


def sample(images_client, name: str, labels: str = "") -> float:
    metrics = exposition(images_client.application).decode()
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", metrics, re.M)
    assert match, f"{name}{labels} not exported"
    return float(match.group(1))


def test_health_reports_the_database_and_the_object_store(images_client):
    response = images_client.get("/health")

    assert response.status_code == 200
    checks = response.get_json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["object_store"]["status"] == "ok"


def test_ready_when_both_dependencies_answer(images_client):
    assert images_client.get("/ready").status_code == 200
    assert sample(images_client, "dependency_up", '{dependency="object_store"}') == 1
    assert sample(images_client, "dependency_up", '{dependency="database"}') == 1


def test_live_needs_no_dependency(images_client):
    assert images_client.get("/live").get_json()["status"] == "ok"


def test_uploads_bytes_and_deletes_are_counted(images_client, alice, upload, tiny_images):
    uploads, stored_bytes = (
        sample(images_client, "images_uploads_total"),
        sample(images_client, "images_upload_bytes_total"),
    )
    deletes = sample(images_client, "images_deletes_total")

    body = upload(alice, tiny_images["JPEG"]).get_json()
    images_client.delete(f"/images/{body['filename']}", headers=alice)

    assert sample(images_client, "images_uploads_total") == uploads + 1
    assert sample(images_client, "images_upload_bytes_total") == stored_bytes + len(tiny_images["JPEG"])
    assert sample(images_client, "images_deletes_total") == deletes + 1


def test_every_rejection_reason_and_store_operation_is_exported_from_the_start(images_client):
    for reason in ("too_large", "unsupported_type", "too_many_pixels", "invalid_image", "empty"):
        sample(images_client, "images_upload_rejections_total", f'{{reason="{reason}"}}')
    for operation in ("put", "get", "delete"):
        sample(images_client, "images_object_store_errors_total", f'{{operation="{operation}"}}')


def test_requests_are_counted_by_route_template_not_by_file_name(images_client, alice, uploaded):
    body = uploaded(alice)
    images_client.get(f"/images/{body['filename']}", headers=alice)

    metrics = exposition(images_client.application).decode()
    assert 'route="/images/<filename>"' in metrics
    assert body["filename"] not in metrics
