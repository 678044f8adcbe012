"""Access tokens: EdDSA (Ed25519) signatures, a `kid` naming the key, one answer to every bad token.

Only the auth service holds a private key and signs; every verifier (auth's /verify, images)
checks the signature with a public key chosen by the token's `kid` header, from a key set it
was given (auth) or fetched from auth's JWKS (images, servicekit.jwks). The algorithm is
pinned: a token whose header names any other algorithm (HS256 signed with the public key
bytes, `none`, ...) is refused before a key is even looked at. `iss` and `aud` are set on
issue and required on decode, `exp` and `iat` required.

flask-jwt-extended answers some token errors with 422 and others with 401; here every token
problem is a 401 problem+json, so a client never learns which check failed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_jwt_extended.exceptions import JWTExtendedException

from servicekit.errors import problem_response

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
# RFC 7638: the thumbprint covers exactly these members, in this order, without whitespace.
_THUMBPRINT_TEMPLATE = '{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'


class UnknownKey(pyjwt.InvalidTokenError):
    """The token names no key the verifier knows (or names none): a 401 like any bad token."""


class KeysUnavailable(RuntimeError):
    """The verifier has no keys and cannot get them now (the auth service is down): a 503."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256): the same key gets the same kid everywhere."""
    member = _THUMBPRINT_TEMPLATE.format(x=_b64url(_raw(public_key)))
    return _b64url(hashlib.sha256(member.encode()).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw(public_key)),
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def public_key_from_jwk(jwk: dict) -> Ed25519PublicKey | None:
    """The key of one JWKS entry, or None for an entry this verifier would never use."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        return None
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        return None
    x = jwk.get("x")
    if not isinstance(x, str):
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    except ValueError:
        return None


def keys_from_jwks(document: dict) -> dict[str, Ed25519PublicKey]:
    """kid -> key for the usable entries of a JWKS. The kid is recomputed from the key, so a
    JWKS entry cannot make a key answer to another key's kid."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS: no 'keys' list")
    keys = {}
    for entry in entries:
        key = public_key_from_jwk(entry)
        if key is not None:
            keys[key_id(key)] = key
    return keys


def load_pem_keys(text: str) -> list[Ed25519PrivateKey | Ed25519PublicKey]:
    """Every Ed25519 key in ``text``: PKCS#8 private keys and SubjectPublicKeyInfo public keys,
    one PEM block after the other. Raises ValueError for a block that is not an Ed25519 key."""
    keys: list[Ed25519PrivateKey | Ed25519PublicKey] = []
    for match in PEM_BLOCK.finditer(text):
        block = match.group(0).encode()
        if "PRIVATE" in match.group(1):
            key = serialization.load_pem_private_key(block, password=None)
        else:
            key = serialization.load_pem_public_key(block)
        if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
            raise ValueError(f"a {match.group(1)} that is not an Ed25519 key")
        keys.append(key)
    if text.strip() and not keys:
        raise ValueError("no PEM block found")
    return keys


def public_of(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


@dataclass(frozen=True)
class SigningKeys:
    """The auth service's keys: one it signs with, all it publishes and accepts."""

    signing_key: Ed25519PrivateKey
    accepted: dict[str, Ed25519PublicKey]

    @classmethod
    def from_pem(cls, signing_pem: str, additional_pem: str = "") -> SigningKeys:
        private_keys = [k for k in load_pem_keys(signing_pem) if isinstance(k, Ed25519PrivateKey)]
        if len(private_keys) != 1:
            raise ValueError("the signing key must be exactly one Ed25519 private key (PKCS#8 PEM)")
        signing_key = private_keys[0]
        accepted = {key_id(public_of(k)): public_of(k) for k in load_pem_keys(additional_pem)}
        accepted[key_id(signing_key.public_key())] = signing_key.public_key()
        return cls(signing_key, accepted)

    @property
    def kid(self) -> str:
        return key_id(self.signing_key.public_key())

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        # The signing key first: a reader that takes the first key takes the current one.
        ordered = [self.kid, *sorted(k for k in self.accepted if k != self.kid)]
        return {"keys": [public_jwk(self.accepted[kid]) for kid in ordered]}

    def lookup(self, kid: str) -> Ed25519PublicKey:
        try:
            return self.accepted[kid]
        except KeyError:
            raise UnknownKey("unknown kid") from None


def unauthorized_response(_error: Exception | None = None):
    return problem_response(
        401,
        "A valid bearer token is required.",
        type_="invalid-token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def keys_unavailable_response(_error: Exception | None = None):
    return problem_response(
        503,
        "The keys that check access tokens cannot be fetched from the auth service; try again shortly.",
        type_="token-keys-unavailable",
        headers={"Retry-After": "5"},
    )


_KEYS = "servicekit.token_keys"


def _signing_keys() -> SigningKeys:
    signing = current_app.extensions[_KEYS][1]
    if signing is None:
        raise RuntimeError("this service holds no signing key: only the auth service issues tokens")
    return signing


def init_jwt(
    jwt: JWTManager,
    app: Flask,
    *,
    issuer: str,
    audience: str,
    lookup_key: Callable[[str], Ed25519PublicKey],
    signing: SigningKeys | None = None,
    access_token_lifetime: datetime.timedelta = datetime.timedelta(minutes=15),
) -> None:
    """Verify tokens with ``lookup_key(kid)`` (raises UnknownKey or KeysUnavailable); sign
    with ``signing`` when given (the auth service only)."""
    app.config.update(
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_ENCODE_ISSUER=issuer,
        JWT_DECODE_ISSUER=issuer,
        JWT_ENCODE_AUDIENCE=audience,
        JWT_DECODE_AUDIENCE=audience,
        JWT_ENCODE_NBF=False,
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=access_token_lifetime,
        JWT_DECODE_LEEWAY=0,
    )

    # The JWTManager is a module global shared by every app of the service (tests make several):
    # each callback finds its keys through the app at hand, never through a closure.
    app.extensions[_KEYS] = (lookup_key, signing)

    @jwt.decode_key_loader
    def _key_for(header: dict, _payload: dict):
        # Checked before any key is chosen: PyJWT checks it again against JWT_DECODE_ALGORITHMS.
        if header.get("alg") != ALGORITHM:
            raise pyjwt.InvalidAlgorithmError("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnknownKey("no kid")
        return current_app.extensions[_KEYS][0](kid)

    @jwt.encode_key_loader
    def _signing_key(_identity):
        return _signing_keys().signing_key

    @jwt.additional_headers_loader
    def _kid_header(_identity):
        return {"kid": _signing_keys().kid}

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
    app.register_error_handler(KeysUnavailable, keys_unavailable_response)


def generate_private_key_pem() -> str:
    """A new Ed25519 private key as PKCS#8 PEM, what Helm's genPrivateKey "ed25519" makes."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return (
        public_of(key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
