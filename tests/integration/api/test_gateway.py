"""Forwarding to auth and images: what passes, what does not, and every way an upstream fails.

The api runs in-process here (Flask's test client); auth is the real service under gunicorn and
images is the stand-in upstream under gunicorn, or a socket that answers garbage.
"""

from __future__ import annotations

import io
import time

import pytest

from devstack.wait import free_port
from servicekit.metrics import exposition
from tests.integration.api.conftest import PASSWORD, assert_waited_for, assert_within, upstream_timeouts
from tests.integration.api.upstream_app import BUSY, FAILING, SLOW, sized_name


def metric(client, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in exposition(client.application).decode().splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- auth routes ---------------------------------------------------------------------------------
def test_register_and_login_are_passed_to_the_auth_service(api_client):
    registered = api_client.post("/api/v1/auth/register", json={"username": "carol", "password": PASSWORD})
    assert registered.status_code == 201
    assert registered.get_json()["username"] == "carol"
    assert registered.content_type == "application/json"

    logged_in = api_client.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD})
    assert logged_in.status_code == 200
    assert logged_in.get_json()["token_type"] == "Bearer"


def test_auth_errors_pass_through_with_their_status_and_problem_body(api_client):
    api_client.post("/api/v1/auth/register", json={"username": "carol", "password": PASSWORD})

    duplicate = api_client.post("/api/v1/auth/register", json={"username": "CAROL", "password": PASSWORD})
    wrong = api_client.post("/api/v1/auth/login", json={"username": "carol", "password": "wrong password"})
    invalid = api_client.post("/api/v1/auth/register", json={"username": "x", "password": "short"})

    assert duplicate.status_code == 409
    assert wrong.status_code == 401
    assert invalid.status_code == 400
    for response in (duplicate, wrong, invalid):
        assert response.content_type == "application/problem+json"
        assert response.get_json()["status"] == response.status_code


def test_the_request_id_is_forwarded_and_echoed(api_client, account):
    _, headers = account()
    response = api_client.post(
        "/api/v1/images/upload",
        data=b"payload",
        content_type="application/octet-stream",
        headers={**headers, "X-Request-ID": "req-gateway-42"},
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "req-gateway-42"
    assert response.get_json()["request_id"] == "req-gateway-42"
    assert response.get_json()["traceparent"].startswith("00-")


# -- images routes (stand-in upstream) -----------------------------------------------------------
def test_image_routes_need_a_valid_token_before_anything_is_forwarded(api_client):
    for method, path in [
        ("POST", "/api/v1/images/upload"),
        ("GET", "/api/v1/images"),
        ("GET", "/api/v1/images/stats"),
        ("GET", f"/api/v1/images/{sized_name(10)}"),
        ("DELETE", f"/api/v1/images/{sized_name(10)}"),
    ]:
        response = api_client.open(path, method=method, headers={"Authorization": "Bearer a.b.c"})
        assert response.status_code == 401, (method, path)


def test_the_upload_body_headers_and_token_reach_images_and_its_answer_comes_back(api_client, account):
    _, headers = account()
    body = b"\x89PNG" + bytes(range(256)) * 100
    response = api_client.post(
        "/api/v1/images/upload",
        data=body,
        content_type="multipart/form-data; boundary=xyz",
        headers={**headers, "Cookie": "session=secret", "X-Forwarded-For": "203.0.113.9"},
    )

    assert response.status_code == 201
    seen = response.get_json()
    assert seen["received_bytes"] == len(body)
    assert seen["content_length"] == str(len(body))
    assert seen["transfer_encoding"] is None
    assert seen["content_type"] == "multipart/form-data; boundary=xyz"
    assert seen["authorization"] == headers["Authorization"]
    assert seen["cookie"] is None
    assert response.headers["Location"] == "/api/v1/images/new.png"


def test_a_download_passes_the_headers_that_matter_and_drops_the_rest(api_client, account):
    _, headers = account()
    response = api_client.get(f"/api/v1/images/{sized_name(1000)}", headers=headers)

    assert response.status_code == 200
    assert len(response.data) == 1000
    assert response.headers["Content-Length"] == "1000"
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{sized_name(1000)}"'
    assert response.headers["ETag"] == '"pattern-1000"'
    assert "X-Internal-Node" not in response.headers
    assert "Set-Cookie" not in response.headers


def test_delete_passes_through_204_without_a_body(api_client, account):
    _, headers = account()
    response = api_client.delete(f"/api/v1/images/{sized_name(1)}", headers=headers)
    assert response.status_code == 204
    assert response.data == b""


@pytest.mark.parametrize(
    "filename", ["..", ".hidden", "a b", "a%2Fb", "0" * 32 + ".svg", "0" * 31 + ".png", "A" * 32 + ".png"]
)
def test_a_filename_that_cannot_be_an_image_is_404_without_asking_images(api_client, account, filename):
    _, headers = account()
    assert api_client.get(f"/api/v1/images/{filename}", headers=headers).status_code == 404


def test_an_upstream_service_error_becomes_502_without_its_body(api_client, account):
    _, headers = account()
    response = api_client.get(f"/api/v1/images/{FAILING}", headers=headers)
    assert response.status_code == 502
    assert response.content_type == "application/problem+json"
    assert "stack trace" not in response.get_data(as_text=True)


def test_an_upstream_503_is_passed_on_with_its_retry_after(api_client, account):
    _, headers = account()
    response = api_client.get(f"/api/v1/images/{BUSY}", headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"


def test_a_slow_images_service_is_504_within_the_read_timeout(api_client, account):
    _, headers = account()
    before = metric(api_client, "api_upstream_requests_total", target="images", outcome="timeout")

    started = time.monotonic()
    response = api_client.get(f"/api/v1/images/{SLOW}", headers=headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.content_type == "application/problem+json"
    assert_waited_for(elapsed, upstream_timeouts(api_client.application, "images")[1])
    after = metric(api_client, "api_upstream_requests_total", target="images", outcome="timeout")
    assert after == before + 1


def test_an_images_service_that_is_down_is_503(make_api_app, auth_service, account, clean_databases):
    client = make_api_app(auth_service.url, f"http://127.0.0.1:{free_port()}").test_client()
    _, headers = account()

    started = time.monotonic()
    response = client.get("/api/v1/images", headers=headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    # Nothing listens there: refused at once; the connect timeout is the most it may take.
    assert_within(elapsed, upstream_timeouts(client.application, "images")[0])
    assert response.get_json()["upstream"] == "images"
    assert metric(client, "api_upstream_requests_total", target="images", outcome="unavailable") >= 1
    # Posts still work, so the pod stays in the Service; the outage is reported, not hidden.
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["images"] == {
        **ready.get_json()["checks"]["images"],
        "status": "unavailable",
        "required": False,
    }
    assert ready.get_json()["checks"]["auth"]["status"] == "ok"
    assert client.get("/health").get_json()["status"] == "degraded"
    assert 'dependency_up{dependency="images"} 0.0' in exposition().decode()


def test_readiness_can_be_made_to_require_the_upstreams(make_api_app, auth_service, clean_databases):
    client = make_api_app(
        auth_service.url, f"http://127.0.0.1:{free_port()}", READY_REQUIRES_UPSTREAMS="true"
    ).test_client()

    ready = client.get("/ready")

    assert ready.status_code == 503
    assert ready.get_json()["detail"] == "Not ready: images unavailable."


def test_an_answer_that_is_not_http_is_502(
    make_api_app, auth_service, garbage_server, account, clean_databases
):
    client = make_api_app(auth_service.url, garbage_server.url).test_client()
    _, headers = account()

    response = client.get("/api/v1/images", headers=headers)

    assert response.status_code == 502
    assert response.content_type == "application/problem+json"
    assert metric(client, "api_upstream_requests_total", target="images", outcome="bad_response") >= 1


def test_a_verify_answer_without_the_promised_json_is_502(make_api_app, stand_in_images, clean_databases):
    # The stand-in answers POST /verify with 200 and HTML.
    client = make_api_app(stand_in_images.url, stand_in_images.url).test_client()
    response = client.post("/api/v1/posts", json={"content": "x"}, headers={"Authorization": "Bearer a.b.c"})
    assert response.status_code == 502
    assert metric(client, "api_upstream_requests_total", target="auth", outcome="bad_response") >= 1


def test_a_token_check_on_a_connection_auth_closed_under_it_is_sent_again(
    make_api_app, keep_alive_cutter, stand_in_images, clean_databases
):
    client = make_api_app(keep_alive_cutter.url, stand_in_images.url).test_client()

    first = client.get("/api/v1/posts/my", headers={"Authorization": "Bearer a.b.c"})
    second = client.get("/api/v1/posts/my", headers={"Authorization": "Bearer a.b.d"})

    assert (first.status_code, second.status_code) == (200, 200)
    # The second check: cut on the reused connection, then sent again on a new one.
    assert keep_alive_cutter.requests == ["POST /verify"] * 3


def test_a_forwarded_get_is_sent_again_but_an_upload_never_is(
    make_api_app, auth_service, keep_alive_cutter, account, clean_databases
):
    client = make_api_app(auth_service.url, keep_alive_cutter.url).test_client()
    _, headers = account()

    listed = [client.get("/api/v1/images", headers=headers).status_code for _ in range(2)]
    upload = client.post(
        "/api/v1/images/upload",
        headers=headers,
        data={"file": (io.BytesIO(b"not sent twice"), "a.png", "image/png")},
        content_type="multipart/form-data",
    )

    assert listed == [200, 200]
    # A POST that reached the service may have been applied: a 502, and it arrived once.
    assert upload.status_code == 502
    assert keep_alive_cutter.requests.count("POST /upload") == 1


def test_an_upload_after_a_pause_goes_on_a_new_connection_not_on_one_the_service_may_be_closing(
    make_api_app, auth_service, keep_alive_cutter, account, clean_databases
):
    # The cutter resets any second request on a connection, as a service whose keep-alive ends
    # just then does; a connection idle past UPSTREAM_MAX_IDLE_SECONDS must not be reused.
    client = make_api_app(auth_service.url, keep_alive_cutter.url, UPSTREAM_MAX_IDLE_SECONDS="0.05")
    client = client.test_client()
    _, headers = account()

    listed = client.get("/api/v1/images", headers=headers)
    time.sleep(0.1)  # the pause is the behaviour under test: longer than the idle limit
    upload = client.post(
        "/api/v1/images/upload",
        headers=headers,
        data={"file": (io.BytesIO(b"sent once"), "a.png", "image/png")},
        content_type="multipart/form-data",
    )

    assert (listed.status_code, upload.status_code) == (200, 200)
    assert keep_alive_cutter.requests == ["GET /images", "POST /upload"]


# -- token cache ---------------------------------------------------------------------------------
def test_a_verified_token_is_reused_from_the_cache(api_client, account):
    _, headers = account()
    api_client.get("/api/v1/posts/my", headers=headers)
    hits = metric(api_client, "api_token_cache_total", result="hit")
    calls = metric(api_client, "api_upstream_requests_total", target="auth", outcome="success")

    for _ in range(5):
        assert api_client.get("/api/v1/posts/my", headers=headers).status_code == 200

    assert metric(api_client, "api_token_cache_total", result="hit") == hits + 5
    assert metric(api_client, "api_upstream_requests_total", target="auth", outcome="success") == calls


def test_health_ready_and_metrics(api_client):
    health = api_client.get("/health").get_json()
    assert {name: check["status"] for name, check in health["checks"].items()} == {
        "database": "ok",
        "auth": "ok",
        "images": "ok",
    }
    assert api_client.get("/ready").status_code == 200
    # Under gunicorn the master serves them on METRICS_PORT; the app port never does.
    assert api_client.get("/metrics").status_code == 404
    text = exposition().decode()
    for name in (
        "api_upstream_requests_total",
        "api_upstream_request_duration_seconds_bucket",
        "api_token_cache_total",
        "api_posts_created_total",
        "dependency_up",
    ):
        assert name in text
    assert 'dependency_up{dependency="auth"} 1.0' in text


def test_unknown_or_repeated_query_parameters_are_400(api_client, account):
    _, headers = account()
    assert api_client.get("/api/v1/posts?limt=5").status_code == 400
    assert api_client.get("/api/v1/posts?limit=5&limit=6").status_code == 400
    assert api_client.get("/api/v1/images?page=2", headers=headers).status_code == 400
    response = api_client.get(f"/api/v1/images/{sized_name(10)}?x=1", headers=headers)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "x", "message": "is not a known query parameter"}]


@pytest.mark.parametrize(
    ("path", "raw_body", "status"),
    [
        ("/api/v1/auth/login", '{"username": "a\\u0000b", "password": "whatever1"}', 401),
        ("/api/v1/auth/login", '{"username": "\\ud800abc", "password": "whatever1"}', 401),
        ("/api/v1/auth/login", '{"username": "carol", "password": "\\ud800abcdefgh"}', 401),
        ("/api/v1/auth/register", '{"username": "carol", "password": "\\ud800abcdefgh"}', 400),
        ("/api/v1/auth/register", '{"username": "a\\u0000b", "password": "whatever1"}', 400),
    ],
)
def test_credentials_no_account_can_have_are_refused_never_a_server_error(api_client, path, raw_body, status):
    response = api_client.post(path, data=raw_body, content_type="application/json")
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


def test_post_text_that_is_not_valid_unicode_is_400(api_client, account):
    _, headers = account()
    response = api_client.post(
        "/api/v1/posts", data='{"content": "\\ud800 lone"}', content_type="application/json", headers=headers
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "content"
