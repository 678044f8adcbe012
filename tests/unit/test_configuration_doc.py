"""docs/configuration.md lists every setting every service reads, as the code declares them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from api.config import ApiSettings
from auth.config import AuthSettings
from backups.config import BackupSettings, ImagesBucketSettings, ReplicaBucketSettings, RestoreSettings
from images.config import ImagesSettings
from servicekit.config import describe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config_doc():
    spec = importlib.util.spec_from_file_location("config_doc", ROOT / "ci" / "config_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_current(config_doc):
    assert config_doc.main(["--check"]) == 0, "run `python ci/config_doc.py` and commit the result"


@pytest.mark.parametrize(
    "settings",
    [
        AuthSettings,
        ApiSettings,
        ImagesSettings,
        BackupSettings,
        RestoreSettings,
        ImagesBucketSettings,
        ReplicaBucketSettings,
    ],
)
def test_every_setting_of_every_service_is_in_the_reference(settings):
    text = (ROOT / "docs" / "configuration.md").read_text()
    for variable, _default, _doc in describe(settings):
        assert f"`{variable}`" in text
