"""The readiness checks of auth and images wait for their own short timeout, never the longer
timeout of real calls: a frozen neighbour must not make the kubelet's probe itself time out."""

from __future__ import annotations

from unittest import mock

import pytest

import api
from api import READINESS_TIMEOUT_SECONDS
from api.config import ApiSettings
from servicekit import config


def app_with(read_timeout: str):
    environ = {
        "DATABASE_URL": "postgresql+psycopg2://u:p@127.0.0.1:1/api_db",
        "AUTH_SERVICE_URL": "http://127.0.0.1:1",
        "IMAGES_SERVICE_URL": "http://127.0.0.1:1",
        "UPSTREAM_READ_TIMEOUT_SECONDS": read_timeout,
    }
    return api.create_app(config.load(ApiSettings, environ))


@pytest.mark.parametrize(("read_timeout", "expected"), [("30", READINESS_TIMEOUT_SECONDS), ("0.5", 0.5)])
def test_each_upstream_check_probes_with_the_readiness_timeout_or_the_read_timeout_if_shorter(
    read_timeout, expected
):
    app = app_with(read_timeout)
    checks = app.extensions["servicekit.checks"]
    for target, upstream in app.extensions["api.upstreams"].items():
        with mock.patch.object(upstream, "probe") as probe:
            check, _required = checks[target]
            check()
        probe.assert_called_once_with(expected)
