"""The chart README's install of a published release, against the package `helm package` makes.

The release workflow pushes `helm package charts/platform` to oci://ghcr.io/<owner>/charts, which
these tests cannot reach: they run the README's command as written, on the same package made
locally, with `helm template` standing for `helm install`.
"""

from __future__ import annotations

import shlex
import subprocess
import tarfile

import yaml

from tests.charts.conftest import AS_IF_INSTALLED, CHART, HELM, ROOT, helm
from tests.readme import readme_command

PUBLISHED = "oci://ghcr.io/platform-sre/charts/platform"


def test_the_readme_installs_the_published_chart_of_the_current_version_and_it_renders(chart_ready, tmp_path):
    command = shlex.split(readme_command(f"helm install platform {PUBLISHED} "))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert command[command.index("--version") + 1] == chart["version"]

    helm("package", str(chart_ready), "--destination", str(tmp_path))
    package = tmp_path / f"{PUBLISHED.rsplit('/', 1)[1]}-{chart['version']}.tgz"
    assert package.is_file(), f"helm package made {[path.name for path in tmp_path.iterdir()]}"

    assert command[:2] == ["helm", "install"]
    args = [str(package) if arg == PUBLISHED else arg for arg in command[2:]]
    # From the repository root, where the command's values/dev.yaml is.
    result = subprocess.run(
        [str(HELM), "template", *args, *AS_IF_INSTALLED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    images = {
        container["image"]
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    for service in ("auth", "api", "images"):
        assert f"ghcr.io/platform-sre/{service}:{chart['appVersion']}" in images


def test_the_packaged_chart_carries_no_readme_template(chart_ready, tmp_path):
    helm("package", str(chart_ready), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("platform-*.tgz")
    with tarfile.open(package) as archive:
        listing = archive.getnames()
    assert "platform/README.md" in listing
    assert not [name for name in listing if name.endswith("README.md.gotmpl")]
