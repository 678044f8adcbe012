"""checkov on every rendered manifest: no finding that is not waived, with its reason, in
checkov-waivers.yaml, and no waiver left that matches nothing."""

from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import ROOT

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
WAIVERS = Path(__file__).with_name("checkov-waivers.yaml")


@pytest.fixture(scope="session")
def checkov_findings(all_renders, tmp_path_factory) -> set[tuple[str, str]]:
    if not CHECKOV.exists():
        pytest.fail("checkov is not installed: run `bash ci/install.sh`", pytrace=False)
    directory = tmp_path_factory.mktemp("rendered")
    for render in all_renders:
        (directory / f"{render.id}.yaml").write_text(render.text)
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return {
        (failed["check_id"], failed["resource"])
        for report in reports
        for failed in report["results"]["failed_checks"]
    }


def load_waivers() -> list[dict]:
    waivers = yaml.safe_load(WAIVERS.read_text())
    for waiver in waivers:
        assert len(waiver.get("reason", "").split()) >= 5, f"{waiver['check']} needs a written reason"
    return waivers


def waived(finding, waivers) -> bool:
    check, resource = finding
    return any(
        waiver["check"] == check
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in waiver["resources"])
        for waiver in waivers
    )


def test_checkov_finds_nothing_that_is_not_waived_with_a_reason(checkov_findings):
    waivers = load_waivers()
    unwaived = sorted(finding for finding in checkov_findings if not waived(finding, waivers))
    assert not unwaived, "checkov findings without a waiver:\n" + "\n".join(f"{c} {r}" for c, r in unwaived)


def test_every_waiver_still_matches_a_finding(checkov_findings):
    for waiver in load_waivers():
        for pattern in waiver["resources"]:
            assert any(
                check == waiver["check"] and fnmatch.fnmatchcase(resource, pattern)
                for check, resource in checkov_findings
            ), f"{waiver['check']} {pattern} matches nothing"


def test_every_image_of_the_chart_can_be_pinned_by_digest_as_the_digest_waiver_says(template):
    """CKV_K8S_43 is waived because the values name tags; the chart must still take digests."""
    digest = "sha256:" + "ab" * 32
    args = ["--set", f"minioProvisioning.image.digest={digest}"]
    for service in ("auth", "api", "images"):
        args += ["--set", f"{service}.image.digest={digest}"]
    result = template(*args)
    assert result.returncode == 0, result.stderr
    images = {}
    for obj in yaml.safe_load_all(result.stdout):
        if not obj or (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") != "platform":
            continue
        spec = obj.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or (
            spec.get("template", {}).get("spec") or (spec if obj["kind"] == "Pod" else None)
        )
        for container in [*((pod or {}).get("initContainers") or []), *((pod or {}).get("containers") or [])]:
            images[f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"] = container["image"]
    assert len(images) >= 9, images  # 3 services + 3 migrate + reconcile + helm test + provisioning
    assert all(image.endswith(f"@{digest}") for image in images.values()), images
