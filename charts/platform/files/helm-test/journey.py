"""The `helm test` journey: a real user's path through the api service, then the cleanup.

Runs in the api image (python and requests are there). Only the api service is called: it
reports the health of auth and images too, and every user action goes through its gateway.
Exits 0 when every step passed; otherwise prints the failed step and exits 1.

auth has no route to delete an account, so every run signs in as the same account
(JOURNEY_USERNAME, its password in JOURNEY_PASSWORD_FILE, the Secret the chart generates once
and keeps, mounted): the first run registers it, later ones find it there (409) and log in. Posts and images
an interrupted run left behind are deleted first. Repeated runs leave at most one account.

    API_URL=http://127.0.0.1:3002 JOURNEY_USERNAME=helm-test JOURNEY_PASSWORD=... python journey.py
"""

import base64
import os
import sys
import time
import uuid

import requests

API_URL = os.environ.get("API_URL", "http://127.0.0.1:3002").rstrip("/")
TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT_SECONDS", "10"))
READY_WAIT = float(os.environ.get("READY_WAIT_SECONDS", "60"))
USERNAME = os.environ.get("JOURNEY_USERNAME", "helm-test")
# The chart mounts the Secret as a file (JOURNEY_PASSWORD_FILE); JOURNEY_PASSWORD for local runs.
PASSWORD = os.environ.get("JOURNEY_PASSWORD", "")
if os.environ.get("JOURNEY_PASSWORD_FILE"):
    with open(os.environ["JOURNEY_PASSWORD_FILE"], encoding="utf-8") as password_file:
        PASSWORD = password_file.read().rstrip("\r\n")

# A valid 1x1 PNG, small enough to read in the source.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class StepFailed(Exception):
    pass


def step(name):
    print(f"-- {name}", flush=True)


def expect(response, status, what):
    if response.status_code != status:
        raise StepFailed(f"{what}: expected {status}, got {response.status_code}: {response.text[:300]}")
    return response


def wait_until_ready(session):
    step("api ready (database, auth and images answer)")
    deadline = time.monotonic() + READY_WAIT
    while True:
        try:
            response = session.get(f"{API_URL}/ready", timeout=TIMEOUT)
            # auth and images do not gate the api's readiness (see READY_REQUIRES_UPSTREAMS),
            # but the journey needs them, so it waits until the api sees them answer too.
            checks = response.json().get("checks", {}) if response.status_code == 200 else {}
            if checks and all(check.get("status") == "ok" for check in checks.values()):
                return
            last = f"{response.status_code}: {response.text[:300]}"
        except requests.RequestException as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise StepFailed(f"api not ready after {READY_WAIT:.0f}s: {last}")
        time.sleep(2)


def check_health(session):
    step("health of api, auth and images")
    body = expect(session.get(f"{API_URL}/health", timeout=TIMEOUT), 200, "GET /health").json()
    checks = body.get("checks", {})
    for dependency in ("database", "auth", "images"):
        state = checks.get(dependency, {}).get("status")
        if state != "ok":
            raise StepFailed(f"api reports {dependency} as {state!r}: {body}")
    expect(session.get(f"{API_URL}/live", timeout=TIMEOUT), 200, "GET /live")


def sign_in(session):
    """The journey's one account: registered by the first run, found (409) by the later ones."""
    if not PASSWORD:
        raise StepFailed("no password: set JOURNEY_PASSWORD_FILE (the chart mounts the helm test Secret) or JOURNEY_PASSWORD")
    credentials = {"username": USERNAME, "password": PASSWORD}

    step(f"register {USERNAME}")
    registered = session.post(f"{API_URL}/api/v1/auth/register", json=credentials, timeout=TIMEOUT)
    if registered.status_code == 409:
        print(f"   {USERNAME} is already there (an earlier run registered it)", flush=True)
    else:
        expect(registered, 201, "register")

    step("log in")
    login = session.post(f"{API_URL}/api/v1/auth/login", json=credentials, timeout=TIMEOUT)
    if login.status_code == 401:
        raise StepFailed(
            f"login as {USERNAME} refused: the account exists with another password (was the helm test "
            f"Secret replaced, or is the name someone else's? set tests.username): {login.text[:300]}"
        )
    if login.status_code == 429:
        # Earlier runs with a wrong password put the name in backoff, or this pod's address is over
        # the gateway's limit: either way waiting is the remedy, and the message says how long.
        raise StepFailed(
            f"login as {USERNAME} throttled for {login.headers.get('Retry-After', '?')} s: too many failed "
            f"logins for this name, or too many requests from this address; run the test again later: "
            f"{login.text[:300]}"
        )
    return {"Authorization": f"Bearer {expect(login, 200, 'login').json()['access_token']}"}


def clear_leftovers(session, auth):
    """Delete what an interrupted earlier run of this account left behind."""
    step("clear what an earlier run left")
    # Deleting moves the rest forward: read the first page again until it is empty.
    while True:
        posts = expect(session.get(f"{API_URL}/api/v1/posts/my", params={"limit": 100}, headers=auth,
                                   timeout=TIMEOUT), 200, "my posts").json()["items"]
        if not posts:
            break
        for post in posts:
            expect(session.delete(f"{API_URL}/api/v1/posts/{post['id']}", headers=auth, timeout=TIMEOUT), 204,
                   "delete an earlier post")
    while True:
        images = expect(session.get(f"{API_URL}/api/v1/images", params={"limit": 100}, headers=auth,
                                    timeout=TIMEOUT), 200, "my images").json()["items"]
        if not images:
            break
        for image in images:
            expect(session.delete(f"{API_URL}/api/v1/images/{image['filename']}", headers=auth,
                                  timeout=TIMEOUT), 204, "delete an earlier image")


def journey(session):
    auth = sign_in(session)
    clear_leftovers(session, auth)

    step("create a post")
    post = expect(
        session.post(f"{API_URL}/api/v1/posts", json={"title": "helm test", "content": "hello from helm test"},
                     headers=auth, timeout=TIMEOUT),
        201, "create post",
    ).json()

    step("list my posts")
    mine = expect(session.get(f"{API_URL}/api/v1/posts/my", headers=auth, timeout=TIMEOUT), 200, "my posts")
    if [item["id"] for item in mine.json()["items"]] != [post["id"]]:
        raise StepFailed(f"my posts should be exactly the new post: {mine.text[:300]}")
    # Post lists are paged by cursor; a list that fits its page says there is no next one.
    if "next_cursor" not in mine.json() or mine.json()["next_cursor"] is not None:
        raise StepFailed(f"my posts should be one page with a null next_cursor: {mine.text[:300]}")

    step("upload an image")
    image = expect(
        session.post(f"{API_URL}/api/v1/images/upload", files={"file": ("pixel.png", PNG, "image/png")},
                     headers=auth, timeout=TIMEOUT),
        201, "upload",
    ).json()
    filename = image["filename"]

    step("download it")
    download = expect(session.get(f"{API_URL}/api/v1/images/{filename}", headers=auth, timeout=TIMEOUT),
                      200, "download")
    if download.content != PNG:
        raise StepFailed(f"downloaded {len(download.content)} bytes that differ from the {len(PNG)} uploaded")

    step("delete the image and the post")
    expect(session.delete(f"{API_URL}/api/v1/images/{filename}", headers=auth, timeout=TIMEOUT), 204,
           "delete image")
    expect(session.delete(f"{API_URL}/api/v1/posts/{post['id']}", headers=auth, timeout=TIMEOUT), 204,
           "delete post")

    step("both are gone")
    expect(session.get(f"{API_URL}/api/v1/images/{filename}", headers=auth, timeout=TIMEOUT), 404,
           "download deleted image")
    remaining = expect(session.get(f"{API_URL}/api/v1/posts/my", headers=auth, timeout=TIMEOUT), 200,
                       "my posts after delete")
    if remaining.json()["items"]:
        raise StepFailed(f"the post is still listed: {remaining.text[:300]}")


def main():
    session = requests.Session()
    session.headers["X-Request-ID"] = f"helm-test-{uuid.uuid4().hex}"
    print(f"journey against {API_URL} (request id {session.headers['X-Request-ID']})", flush=True)
    try:
        wait_until_ready(session)
        check_health(session)
        journey(session)
    except (StepFailed, requests.RequestException, KeyError, ValueError) as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    print("journey passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
