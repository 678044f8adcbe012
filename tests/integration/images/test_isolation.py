"""A user sees, downloads and deletes only their own images; tokens are checked by images itself."""

from __future__ import annotations

import pytest

from tests.integration.images.conftest import bucket_keys
from tests.token_keys import KeyPair, forged_tokens


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


# The claims images checks on top of the signature (auth checks the user still exists).
BAD_CLAIMS = {
    "subject not a user id": {"user_id": "../2"},
    "subject zero": {"user_id": "0"},
    "subject with a trailing newline": {"user_id": "2\n"},
    "no username": {"username": None},
    "username not a string": {"username": 7},
}


def _bad_tokens(pair, good_token: str) -> dict[str, str | None]:
    tokens = forged_tokens(pair, good_token, 1, "alice")
    for name, changes in BAD_CLAIMS.items():
        tokens[name] = pair.token(changes.get("user_id", 1), changes.get("username", "alice"))
    return tokens


_NAMING_PAIR = KeyPair.generate()
BAD_TOKENS = list(_bad_tokens(_NAMING_PAIR, _NAMING_PAIR.token()))


@pytest.mark.parametrize("attack", BAD_TOKENS)
def test_a_bad_token_is_a_401_problem_json(images_client, token_keys, attack):
    pair = token_keys.pair
    token = _bad_tokens(pair, pair.token())[attack]
    headers = {} if token is None else {"Authorization": f"Bearer {token}".strip()}

    response = images_client.get("/images", headers=headers)

    assert response.status_code == 401, response.data
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_well_formed_token_signed_by_auths_key_is_accepted(images_client, token_keys):
    token = token_keys.pair.token()

    response = images_client.get("/images", headers={"Authorization": f"Bearer {token}"})

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
