"""JWT settings shared by every service that reads tokens, and one answer to every bad token.

HS256 only, with `iss` and `aud` set on issue and required on decode, `exp` and `iat`
required. flask-jwt-extended answers some token errors with 422 and others with 401; here
every token problem is a 401 problem+json, so a client never learns which check failed.
"""

from __future__ import annotations

import datetime

import jwt as pyjwt
from flask import Flask
from flask_jwt_extended import JWTManager
from flask_jwt_extended.exceptions import JWTExtendedException

from servicekit.config import ServiceSettings
from servicekit.errors import problem_response

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")


def unauthorized_response(_error: Exception | None = None):
    return problem_response(
        401,
        "A valid bearer token is required.",
        type_="invalid-token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def init_jwt(
    jwt: JWTManager,
    app: Flask,
    settings: ServiceSettings,
    access_token_lifetime: datetime.timedelta = datetime.timedelta(minutes=15),
) -> None:
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret,
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_ENCODE_ISSUER=settings.jwt_issuer,
        JWT_DECODE_ISSUER=settings.jwt_issuer,
        JWT_ENCODE_AUDIENCE=settings.jwt_audience,
        JWT_DECODE_AUDIENCE=settings.jwt_audience,
        JWT_ENCODE_NBF=False,
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=access_token_lifetime,
        JWT_DECODE_LEEWAY=0,
    )

    @jwt.token_verification_loader
    def _has_required_claims(header: dict, payload: dict) -> bool:
        return header.get("alg") == ALGORITHM and all(claim in payload for claim in REQUIRED_CLAIMS)

    jwt.init_app(app)
    # Replace every handler flask-jwt-extended registered (some answer 422) with one 401.
    for exc_class in list(app.error_handler_spec[None][None]):
        if exc_class.__module__.startswith(("jwt", "flask_jwt_extended")):
            app.register_error_handler(exc_class, unauthorized_response)
    for base in (pyjwt.exceptions.PyJWTError, JWTExtendedException):
        app.register_error_handler(base, unauthorized_response)
