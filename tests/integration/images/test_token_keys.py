"""images checks tokens with the keys auth publishes: what it answers while auth is down, and a
key rotation walked end to end with live tokens (charts/platform/README.md, "Rotating the token
signing key")."""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest
import requests

import images
from devstack.services import ServiceProcess
from devstack.wait import free_port, wait_until
from images.config import ImagesSettings
from servicekit import config
from servicekit.tokens import create_access_token
from tests.conftest import service_environ
from tests.integration.images.conftest import minio_environ
from tests.readme import readme_has
from tests.token_keys import JwksServer, KeyPair, TokenKeys

PASSWORD = "correct horse battery"


def images_app_for(database_urls, minio, token_keys, jwks_url: str, **extra: str):
    environ = service_environ(
        "images",
        database_urls["images"],
        token_keys,
        **minio_environ(minio),
        AUTH_JWKS_URL=jwks_url,
        JWKS_FETCH_TIMEOUT_SECONDS="0.5",
        **extra,
    )
    return images.create_app(config.load(ImagesSettings, environ))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def unreachable_auth():
    server = JwksServer().start()
    server.down = True
    yield server
    server.stop()


def test_with_auth_down_and_no_keys_held_a_token_gets_503_problem_json_at_once(
    database_urls, minio, token_keys, unreachable_auth, clean_image_rows
):
    app = images_app_for(database_urls, minio, token_keys, unreachable_auth.url)

    started = time.monotonic()
    response = app.test_client().get("/images", headers=bearer(token_keys.pair.token()))

    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"].endswith("token-keys-unavailable")
    assert response.headers["Retry-After"] == "5"


def test_with_auth_down_a_request_without_a_valid_token_is_still_a_401(
    database_urls, minio, token_keys, unreachable_auth, clean_image_rows
):
    # Keys are looked up only for a well-formed EdDSA token naming a kid.
    client = images_app_for(database_urls, minio, token_keys, unreachable_auth.url).test_client()

    assert client.get("/images").status_code == 401
    assert client.get("/images", headers=bearer("a.b.c")).status_code == 401
    assert unreachable_auth.fetches == 0


def test_images_holds_no_key_that_signs_tokens(images_app):
    with images_app.app_context(), pytest.raises(RuntimeError, match="only the auth service"):
        create_access_token("1", "alice")


# -- a rotation, walked with live tokens --------------------------------------------------------
class RollingAuth:
    """The real auth service under gunicorn on one port, redeployed with other keys at each
    step of the rotation, as a rolling update would."""

    def __init__(self, database_url: str, token_keys: TokenKeys) -> None:
        self.database_url = database_url
        self.token_keys = token_keys
        self.port = free_port()
        self.process: ServiceProcess | None = None

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def deploy(self, signing: KeyPair, *additional: KeyPair | str) -> None:
        """Run auth signing with `signing` and publishing `additional` (key pairs, or PEM text)."""
        if self.process is not None:
            self.process.stop()
        environ = service_environ(
            "auth",
            self.database_url,
            self.token_keys,
            BCRYPT_ROUNDS="4",
            JWT_SIGNING_KEY=signing.private_pem,
            # Public halves are enough: auth only signs with JWT_SIGNING_KEY.
            JWT_ADDITIONAL_KEYS="".join(
                key if isinstance(key, str) else key.public_pem for key in additional
            ),
        )
        self.process = ServiceProcess("auth", self.port, environ, workers=1).start()

    def published(self) -> list[str]:
        return [key["kid"] for key in requests.get(self.jwks_url, timeout=5).json()["keys"]]

    def login(self) -> str:
        body = {"username": "alice", "password": PASSWORD}
        response = requests.post(f"{self.process.url}/login", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def verifies(self, token: str) -> int:
        return requests.post(f"{self.process.url}/verify", headers=bearer(token), timeout=5).status_code

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def rolling_auth(database_urls, token_keys, clean_databases):
    auth = RollingAuth(database_urls["auth"], token_keys)
    yield auth
    auth.stop()


def readme_openssl(command: str, workdir) -> str:
    """One of the README's openssl commands, as written, run in workdir; its output."""
    result = subprocess.run(shlex.split(readme_has(command)), cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def next_key(tmp_path) -> tuple[KeyPair, str]:
    """The next signing key and its public half, made as the chart README's procedure says."""
    readme_openssl("openssl genpkey -algorithm ed25519 -out next.pem", tmp_path)
    public_half = readme_openssl("openssl pkey -in next.pem -pubout", tmp_path)
    return KeyPair((tmp_path / "next.pem").read_text()), public_half


@pytest.mark.usefixtures("clean_image_rows")
def test_a_key_rotation_keeps_every_live_token_valid_until_the_old_key_is_retired(
    rolling_auth, next_key, database_urls, minio, token_keys
):
    old, (new, new_public_half) = KeyPair.generate(), next_key
    cache_seconds = 1
    images_client = images_app_for(
        database_urls,
        minio,
        token_keys,
        rolling_auth.jwks_url,
        JWKS_CACHE_SECONDS=str(cache_seconds),
        JWKS_MIN_REFRESH_SECONDS="0",
    ).test_client()

    def images_answers(token: str) -> int:
        return images_client.get("/images", headers=bearer(token)).status_code

    # Before: auth signs with the old key, the only one it publishes.
    rolling_auth.deploy(old)
    registered = requests.post(
        f"{rolling_auth.process.url}/register", json={"username": "alice", "password": PASSWORD}, timeout=10
    )
    assert registered.status_code == 201
    old_token = rolling_auth.login()
    assert images_answers(old_token) == 200

    # 1. Publish the new key (its public half), still signing with the old one.
    rolling_auth.deploy(old, new_public_half)
    assert rolling_auth.published() == [old.kid, new.kid]
    assert images_answers(old_token) == 200

    # 2. Switch the signer; the old key stays published and accepted.
    rolling_auth.deploy(new, old)
    assert rolling_auth.published() == [new.kid, old.kid]
    new_token = rolling_auth.login()
    assert new_token != old_token
    assert rolling_auth.verifies(old_token) == 200
    assert rolling_auth.verifies(new_token) == 200
    # images has not seen the new kid yet: the unknown kid makes it fetch the JWKS again.
    assert images_answers(new_token) == 200
    assert images_answers(old_token) == 200

    # 3. Retire the old key (after the longest token lifetime plus the JWKS cache TTL).
    rolling_auth.deploy(new)
    assert rolling_auth.published() == [new.kid]
    assert rolling_auth.verifies(old_token) == 401
    assert rolling_auth.verifies(new_token) == 200
    # images refuses it once its cached copy of the JWKS has expired and been fetched again.
    wait_until(
        lambda: images_answers(old_token) == 401,
        timeout=cache_seconds + 10,
        message="images to refuse the retired key's token",
    )
    assert images_answers(new_token) == 200
