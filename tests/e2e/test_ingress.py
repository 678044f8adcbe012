"""REST through a real ingress controller: Traefik (tests/e2e/traefik.py) serves the chart's
Ingress with TLS and, separately, the chart's HTTPRoute through a Gateway; the user journey passes
through each with the certificate verified against a CA the test makes.
"""

from __future__ import annotations

import base64
import secrets

import pytest
import requests

from tests.e2e.traefik import GATEWAY_HOST, INGRESS_HOST

# A valid 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def journey(session: requests.Session, base: str) -> None:
    """Register, sign in, post, upload, download the same bytes, delete: a user's path through the api."""
    credentials = {"username": f"ingress-{secrets.token_hex(4)}", "password": "correct horse battery staple"}
    assert session.post(f"{base}/auth/register", json=credentials, timeout=30).status_code == 201
    login = session.post(f"{base}/auth/login", json=credentials, timeout=30)
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

    post = session.post(f"{base}/posts", json={"title": "through the ingress", "content": "hello"},
                        headers=auth, timeout=30)  # fmt: skip
    assert post.status_code == 201, post.text
    public = session.get(f"{base}/posts", timeout=30).json()["items"]
    assert post.json()["id"] in [item["id"] for item in public]

    upload = session.post(f"{base}/images/upload", files={"file": ("pixel.png", PNG, "image/png")},
                          headers=auth, timeout=30)  # fmt: skip
    assert upload.status_code == 201, upload.text
    filename = upload.json()["filename"]
    download = session.get(f"{base}/images/{filename}", headers=auth, timeout=30)
    assert download.status_code == 200 and download.content == PNG

    assert session.delete(f"{base}/images/{filename}", headers=auth, timeout=30).status_code == 204
    assert session.delete(f"{base}/posts/{post.json()['id']}", headers=auth, timeout=30).status_code == 204


@pytest.mark.parametrize("host", [INGRESS_HOST, GATEWAY_HOST], ids=["ingress", "gateway-httproute"])
def test_the_user_journey_passes_through_traefik_with_tls_verified(traefik, host):
    journey(traefik.session(host), traefik.url(host, "/api/v1"))


@pytest.mark.parametrize("host", [INGRESS_HOST, GATEWAY_HOST], ids=["ingress", "gateway-httproute"])
def test_only_the_api_paths_are_routed(traefik, host):
    session = traefik.session(host)
    for path in ("/health", "/ready", "/metrics", "/live"):
        assert session.get(traefik.url(host, path), timeout=10).status_code == 404, path


def test_a_client_that_does_not_trust_the_certificate_is_refused(traefik):
    session = traefik.session(INGRESS_HOST)
    session.verify = True  # the system's CAs, which never signed the test's certificate
    with pytest.raises(requests.exceptions.SSLError):
        session.get(traefik.url(INGRESS_HOST, "/api/v1/posts"), timeout=10)


def test_the_gateway_accepted_the_chart_route(cluster, traefik, dev_release):
    (route,) = cluster.objects("httproutes", dev_release)
    (parent,) = route["status"]["parents"]
    conditions = {condition["type"]: condition["status"] for condition in parent["conditions"]}
    assert conditions.get("Accepted") == "True" and conditions.get("ResolvedRefs") == "True", parent
