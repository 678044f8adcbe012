"""The auth service: accounts, passwords (bcrypt) and access tokens (JWT)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import bindparam, select

from auth import passwords, routes
from auth.config import AuthSettings
from auth.models import TokenUser, User, db
from servicekit import config
from servicekit.app import create_service_app
from servicekit.config import ConfigError
from servicekit.database import fetch_all, init_database, sql_of
from servicekit.tokens import SigningKeys, init_tokens, user_id_of


def create_app(settings: AuthSettings | None = None) -> Flask:
    settings = settings or config.load(AuthSettings)
    app = create_service_app("auth", settings)
    init_database(app, db, settings)
    keys = signing_keys(settings)
    app.extensions["auth.keys"] = keys
    init_tokens(
        app,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lookup_key=keys.lookup,
        load_user=_load_token_user,
        signing=keys,
        access_token_lifetime=settings.token_lifetime,
    )
    passwords.init_app(app, settings.bcrypt_rounds)
    app.register_blueprint(routes.bp)
    return app


def signing_keys(settings: AuthSettings) -> SigningKeys:
    try:
        return SigningKeys.from_pem(settings.jwt_signing_key, settings.jwt_additional_keys)
    except ValueError as error:
        # Named like every other bad setting, without the key itself.
        raise ConfigError(
            f"invalid configuration for AuthSettings:\n  - JWT_SIGNING_KEY or JWT_ADDITIONAL_KEYS: {error}"
        ) from None


# The id and name only: a token check has no use for the password hash, nor for a User object.
_TOKEN_USER = sql_of(select(User.id, User.username).where(User.id == bindparam("user_id")))


def _load_token_user(claims: dict) -> TokenUser | None:
    # A token outlives nothing: the user it names must still exist.
    user_id = user_id_of(claims)
    if user_id is None:
        return None
    rows = fetch_all(db.engine, _TOKEN_USER, {"user_id": user_id})
    return TokenUser(*rows[0]) if rows else None
