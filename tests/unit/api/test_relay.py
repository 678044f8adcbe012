"""Relaying an upstream answer: which headers pass, and what a 5xx becomes (no network)."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from flask import Flask
from urllib3 import HTTPResponse

from api import gateway
from api.upstream import Upstream
from servicekit.errors import ApiError


@pytest.fixture
def app():
    return Flask("relay-test")


def answer(status: int, headers: dict, body: bytes = b"") -> mock.Mock:
    raw = HTTPResponse(body=io.BytesIO(body), headers=headers, status=status, preload_content=False)
    response = mock.Mock(status_code=status, headers=raw.headers, raw=raw)
    return response


UPSTREAM = Upstream("images", "http://images:3003", connect_timeout=1, read_timeout=1)


def test_hop_by_hop_and_internal_headers_are_dropped(app):
    upstream_headers = {
        "Content-Type": "image/png",
        "Content-Length": "4",
        "ETag": '"abc"',
        "Content-Disposition": "inline",
        "Connection": "close",
        "Keep-Alive": "timeout=5",
        "Transfer-Encoding": "chunked",
        "Upgrade": "h2c",
        "Proxy-Authenticate": "Basic",
        "Trailer": "X-Checksum",
        "TE": "trailers",
        "Set-Cookie": "a=b",
        "Server": "gunicorn",
        "X-Internal": "node-7",
        "WWW-Authenticate": "Bearer",
    }
    with app.test_request_context():
        response = gateway._relay(UPSTREAM, answer(200, upstream_headers, b"\x89PNG"), None)
    names = {name.lower() for name, _ in response.headers}
    assert names == {"content-type", "content-length", "etag", "content-disposition", "www-authenticate"}
    assert b"".join(response.response) == b"\x89PNG"


def test_a_location_inside_the_service_becomes_the_gateways_address(app):
    with app.test_request_context():
        for location in ("/images/x.png", "http://images:3003/images/x.png"):
            response = gateway._relay(UPSTREAM, answer(201, {"Location": location}), gateway.IMAGES_LOCATION)
            assert response.headers["Location"] == "/api/v1/images/x.png"


def test_a_response_without_content_type_gets_none_added(app):
    with app.test_request_context():
        response = gateway._relay(UPSTREAM, answer(204, {}), None)
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize("status", [500, 501, 505])
def test_an_upstream_failure_becomes_502(app, status):
    upstream_answer = answer(status, {"Content-Type": "text/plain"}, b"Traceback ...")
    with app.test_request_context(), pytest.raises(ApiError) as caught:
        gateway._relay(UPSTREAM, upstream_answer, None)
    assert caught.value.status == 502
    upstream_answer.close.assert_called_once()


@pytest.mark.parametrize("status", [502, 503, 504, 400, 401, 404, 409, 413, 415])
def test_other_statuses_pass_through(app, status):
    with app.test_request_context():
        assert (
            gateway._relay(
                UPSTREAM, answer(status, {"Content-Type": "application/problem+json"}), None
            ).status_code
            == status
        )
