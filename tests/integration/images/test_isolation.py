"""A user sees, downloads and deletes only their own images; tokens are checked by images itself."""

from __future__ import annotations

import datetime

import jwt as pyjwt
import pytest

from tests.integration.images.conftest import bucket_keys


@pytest.fixture
def alices_image(uploaded, alice) -> dict:
    return uploaded(alice)


def test_another_users_images_are_not_listed(images_client, bob, alices_image):
    assert images_client.get("/images", headers=bob).get_json()["items"] == []


def test_another_users_image_cannot_be_downloaded(images_client, bob, alices_image):
    response = images_client.get(f"/images/{alices_image['filename']}", headers=bob)

    assert response.status_code == 404
    assert response.get_json()["detail"] == "No such image."


def test_another_users_image_cannot_be_deleted(images_client, alice, bob, alices_image, s3):
    response = images_client.delete(f"/images/{alices_image['filename']}", headers=bob)

    assert response.status_code == 404
    assert images_client.get(f"/images/{alices_image['filename']}", headers=alice).status_code == 200
    assert bucket_keys(s3) == [f"users/1/{alices_image['filename']}"]


def test_another_users_images_are_not_counted(images_client, bob, alices_image):
    assert images_client.get("/stats", headers=bob).get_json()["count"] == 0


def test_each_users_objects_live_under_their_own_prefix(alice, bob, uploaded, s3):
    mine, theirs = uploaded(alice), uploaded(bob)

    assert bucket_keys(s3) == sorted([f"users/1/{mine['filename']}", f"users/2/{theirs['filename']}"])


ROUTES = [
    ("POST", "/upload"),
    ("GET", "/images"),
    ("GET", "/images/x.png"),
    ("DELETE", "/images/x.png"),
    ("GET", "/stats"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token(images_client, method, path):
    response = images_client.open(path, method=method)

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def forged(jwt_secret: str, **changes) -> str:
    now = datetime.datetime.now(datetime.UTC)
    claims = {
        "sub": "1",
        "username": "alice",
        "iat": now,
        "exp": now + datetime.timedelta(minutes=5),
        "iss": "platform-auth",
        "aud": "platform",
        "type": "access",
        "jti": "x",
        "fresh": False,
    }
    claims.update(changes)
    secret = claims.pop("secret", jwt_secret)
    return pyjwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


BAD_TOKENS = {
    "signed with another key": {"secret": "another-secret-that-is-long-enough-0123456789"},
    "expired": {"exp": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)},
    "wrong audience": {"aud": "elsewhere"},
    "wrong issuer": {"iss": "someone-else"},
    "subject not a user id": {"sub": "../2"},
    "subject zero": {"sub": "0"},
    "subject with a trailing newline": {"sub": "2\n"},
    "no username": {"username": None},
    "username not a string": {"username": 7},
}


@pytest.mark.parametrize("changes", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_token_is_a_401(images_client, jwt_secret, changes):
    response = images_client.get(
        "/images", headers={"Authorization": f"Bearer {forged(jwt_secret, **changes)}"}
    )

    assert response.status_code == 401


def test_a_well_formed_token_from_the_shared_secret_is_accepted(images_client, jwt_secret):
    response = images_client.get("/images", headers={"Authorization": f"Bearer {forged(jwt_secret)}"})

    assert response.status_code == 200


def test_a_token_issued_by_the_auth_service_is_accepted(
    images_client, register_user, login, upload, tiny_images
):
    user = register_user("carol")
    headers = {"Authorization": f"Bearer {login('carol')}"}

    response = upload(headers, tiny_images["GIF"])

    assert response.status_code == 201
    listed = images_client.get("/images", headers=headers).get_json()["items"]
    assert [item["filename"] for item in listed] == [response.get_json()["filename"]]
    assert user["id"] >= 1
