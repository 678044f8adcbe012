"""The chart READMEs' parameter tables are generated from the values.yaml comments (helm-docs)."""

from __future__ import annotations

import difflib
import shutil
import subprocess

from tests.charts.conftest import CHART, ROOT, THIRD_PARTY

GENERATED = [
    CHART / "README.md",
    *(CHART / "charts" / name / "README.md" for name in ("auth", "api", "images")),
]


def _regenerated_copy(tmp_path):
    """Runs `make docs` as a developer would, in a copy of the charts, and returns the copy."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("Makefile", ".helmdocsignore"):
        shutil.copy2(ROOT / name, copy / name)
    # The copied third-party charts are not ours to document; the copy leaves them out.
    skipped = {*THIRD_PARTY, *(f"{name}-*.tgz" for name in THIRD_PARTY)}
    shutil.copytree(ROOT / "charts", copy / "charts", ignore=shutil.ignore_patterns(*skipped))
    (copy / ".tools").symlink_to(ROOT / ".tools")
    result = subprocess.run(
        ["make", "docs"], cwd=copy, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"make docs failed:\n{result.stdout}\n{result.stderr}"
    assert "level=warning" not in result.stderr, f"helm-docs warned:\n{result.stderr}"
    return copy


def test_every_chart_readme_holds_the_parameter_table_make_docs_generates(tmp_path):
    copy = _regenerated_copy(tmp_path)
    stale = {}
    for readme in GENERATED:
        wanted = (copy / readme.relative_to(ROOT)).read_text()
        current = readme.read_text()
        if current != wanted:
            diff = difflib.unified_diff(
                current.splitlines(), wanted.splitlines(), "current", "generated", lineterm=""
            )
            stale[str(readme.relative_to(ROOT))] = "\n".join(list(diff)[:40])
    assert not stale, "stale chart READMEs, run `make docs` and commit them:\n" + "\n\n".join(
        f"{path}:\n{diff}" for path, diff in stale.items()
    )


def test_every_documented_value_has_a_description(tmp_path):
    """A value helm-docs cannot attach a comment to shows with an empty description."""
    undescribed = [
        f"{readme.relative_to(ROOT)}: {line.split('|')[1].strip()}"
        for readme in GENERATED
        for line in readme.read_text().splitlines()
        if line.startswith("| ") and line.endswith("|  |")
    ]
    assert not undescribed, "values without a `# --` comment helm-docs reads:\n" + "\n".join(undescribed)


def test_the_packaged_chart_leaves_the_readme_templates_out():
    ignored = (CHART / ".helmignore").read_text().splitlines()
    assert "README.md.gotmpl" in ignored
    assert all(readme.with_name("README.md.gotmpl").is_file() for readme in GENERATED)
