"""The auth service: accounts, passwords (bcrypt) and access tokens (JWT)."""

from __future__ import annotations

from flask import Flask

from auth import passwords, routes
from auth.config import AuthSettings
from auth.models import User, db, jwt
from servicekit import config
from servicekit.app import create_service_app
from servicekit.database import init_database
from servicekit.tokens import init_jwt


def create_app(settings: AuthSettings | None = None) -> Flask:
    settings = settings or config.load(AuthSettings)
    app = create_service_app("auth", settings)
    init_database(app, db, settings)
    init_jwt(jwt, app, settings, access_token_lifetime=settings.token_lifetime)
    passwords.init_app(app, settings.bcrypt_rounds)
    app.register_blueprint(routes.bp)
    return app


@jwt.user_lookup_loader
def _load_token_user(_header: dict, payload: dict) -> User | None:
    # A token outlives nothing: the user it names must still exist.
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject.isdigit():
        return None
    return db.session.get(User, int(subject))
