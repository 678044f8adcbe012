"""POST /register, POST /login, POST /verify, GET /.well-known/jwks.json."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, current_app, jsonify
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from auth import passwords, throttle
from auth.models import User, db
from servicekit.app import settings_of
from servicekit.errors import ApiError
from servicekit.tokens import create_access_token, current_user, token_required
from servicekit.validation import invalid, json_object

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

USERNAME = re.compile(r"[A-Za-z0-9_.\-]{3,32}")

REGISTRATIONS = Counter("auth_registrations_total", "Registration attempts by outcome.", ["outcome"])
LOGINS = Counter("auth_logins_total", "Login attempts by outcome.", ["outcome"])
for _outcome in ("created", "duplicate", "invalid"):
    REGISTRATIONS.labels(_outcome)
for _outcome in ("success", "failure", "invalid", "throttled"):
    LOGINS.labels(_outcome)


@bp.post("/register")
def register():
    try:
        body = json_object(required={"username": str, "password": str})
        username = body["username"]
        if not USERNAME.fullmatch(username):
            raise invalid("username", "must be 3 to 32 characters of letters, digits, '_', '.' or '-'")
        encoded = passwords.validate_new(body["password"])
    except ApiError:
        REGISTRATIONS.labels("invalid").inc()
        raise

    user = User(username=username, password_hash=passwords.hash_password(encoded))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # The unique index on lower(username) decides, so two racing sign-ups cannot both win.
        db.session.rollback()
        REGISTRATIONS.labels("duplicate").inc()
        raise ApiError(409, "That username is taken.", type_="username-taken") from None
    REGISTRATIONS.labels("created").inc()
    log.info("user registered", extra={"user_id": user.id})
    return jsonify(id=user.id, username=user.username), 201


@bp.post("/login")
def login():
    try:
        body = json_object(required={"username": str, "password": str})
    except ApiError:
        LOGINS.labels("invalid").inc()
        raise
    # Before anything costly, and alike for names no account has (see auth/throttle.py).
    claim = throttle.claim_attempt(body["username"], settings_of(current_app))
    if not claim.allowed:
        LOGINS.labels("throttled").inc()
        raise ApiError(
            429,
            "Too many failed logins for this username; try again later.",
            type_="login-throttled",
            headers={"Retry-After": str(claim.retry_after_seconds)},
        )
    # A name no account can have (NUL, a lone surrogate, ...) is an unknown user, not a query.
    user = None
    if USERNAME.fullmatch(body["username"]):
        user = db.session.execute(
            select(User).where(func.lower(User.username) == body["username"].lower())
        ).scalar_one_or_none()
    if not passwords.check_password(body["password"], user.password_hash if user else None):
        LOGINS.labels("failure").inc()
        raise ApiError(401, "Unknown username or wrong password.", type_="invalid-credentials")
    throttle.reset(body["username"])
    LOGINS.labels("success").inc()
    token = create_access_token(str(user.id), user.username)
    lifetime = settings_of(current_app).token_lifetime
    return jsonify(access_token=token, token_type="Bearer", expires_in=int(lifetime.total_seconds()))


@bp.post("/verify")
@token_required
def verify():
    return jsonify(valid=True, user_id=current_user.id, username=current_user.username)


@bp.get("/.well-known/jwks.json")
def jwks():
    # Public keys only; verifiers cache it, and a rotation waits out this max-age (charts/platform/README.md).
    response = jsonify(current_app.extensions["auth.keys"].jwks())
    response.headers["Cache-Control"] = f"public, max-age={settings_of(current_app).jwks_max_age_seconds}"
    return response
