"""Access tokens: EdDSA (Ed25519) signatures, a `kid` naming the key, one answer to every bad token.

Only the auth service holds a private key and signs; every verifier (auth's /verify, images)
checks the signature with a public key chosen by the token's `kid` header, from a key set it
was given (auth) or fetched from auth's JWKS (images, servicekit.jwks). The algorithm is
pinned: a token whose header names any other algorithm (HS256 signed with the public key
bytes, `none`, ...) is refused before a key is even looked at. `iss` and `aud` are set on
issue and required on decode, `exp`, `iat` and `sub` required, `type` must be "access".
Every token problem is the same 401 problem+json, so a client never learns which check failed.

PyJWT signs and verifies; the token check around it is ours (token_required), because it runs
on every authenticated request: flask-jwt-extended had PyJWT parse each token four times, and
its decode took 0.38 ms a token against 0.25 ms for one PyJWT decode, 0.15 ms of which is the
Ed25519 signature itself. Here the header is read once, with a strict base64url match, to
choose the key, and PyJWT decodes the token once.

The same token comes back many times (each gateway worker sends it to auth's /verify once per
TOKEN_CACHE_SECONDS, images checks it on every request), so each process remembers the last
VERIFIED_TOKENS_KEPT tokens it decoded, as Envoy's jwt_authn caches verified tokens. A token is
kept only once every check has passed, under its exact text and the key that verified it; on the
next sight only what can have changed since is checked: that the key is still one this verifier
accepts (looked up again, so a key dropped in a rotation refuses its tokens at once) and that
the token has not expired. The user is still loaded on every request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask, current_app, g, request
from werkzeug.local import LocalProxy

from servicekit.errors import problem_response

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
TOKEN_TYPE = "access"  # noqa: S105 - the `type` claim of an access token, not a secret
# RFC 6750's scheme (case-insensitive, as every HTTP auth scheme) and a JWS in compact form:
# three unpadded base64url segments. Anything else is refused before any of it is decoded.
BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)
MAX_TOKEN_CHARACTERS = 4096
# A user id as auth writes it in `sub`: decimal, no sign or leading zero, within a BIGINT.
# Always fullmatch: ``$`` would also match before a trailing newline (and int() ignores it).
USER_ID = re.compile(r"[1-9][0-9]{0,17}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
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


@dataclass(frozen=True)
class TokenRules:
    """What this service accepts (and, for auth, issues): kept in app.extensions by init_tokens."""

    issuer: str
    audience: str
    lookup_key: Callable[[str], Ed25519PublicKey]
    load_user: Callable[[dict[str, Any]], Any]
    signing: SigningKeys | None
    access_token_lifetime: datetime.timedelta


_RULES = "servicekit.tokens"


def init_tokens(
    app: Flask,
    *,
    issuer: str,
    audience: str,
    lookup_key: Callable[[str], Ed25519PublicKey],
    load_user: Callable[[dict[str, Any]], Any],
    signing: SigningKeys | None = None,
    access_token_lifetime: datetime.timedelta = datetime.timedelta(minutes=15),
) -> None:
    """Check tokens with ``lookup_key(kid)`` (raises UnknownKey or KeysUnavailable); a valid
    token's claims become ``current_user`` through ``load_user`` (None: the token is refused).
    Sign with ``signing`` when given (the auth service only)."""
    app.extensions[_RULES] = TokenRules(
        issuer, audience, lookup_key, load_user, signing, access_token_lifetime
    )
    app.register_error_handler(pyjwt.PyJWTError, unauthorized_response)
    app.register_error_handler(KeysUnavailable, keys_unavailable_response)


def _rules() -> TokenRules:
    return current_app.extensions[_RULES]


def create_access_token(identity: str, username: str) -> str:
    """A signed access token for user ``identity`` (auth only), valid for the configured lifetime."""
    rules = _rules()
    if rules.signing is None:
        raise RuntimeError("this service holds no signing key: only the auth service issues tokens")
    return signed_access_token(
        rules.signing,
        identity,
        username,
        issuer=rules.issuer,
        audience=rules.audience,
        lifetime=rules.access_token_lifetime,
    )


def signed_access_token(
    signing: SigningKeys,
    identity: str,
    username: str,
    *,
    issuer: str,
    audience: str,
    lifetime: datetime.timedelta,
) -> str:
    """The access token auth issues, signed with ``signing``: each one new (its own ``jti``).

    Outside auth, only for what holds auth's key anyway: the benchmark mints tokens with its own
    stack's key, since /login would spend a bcrypt hash on each."""
    now = datetime.datetime.now(datetime.UTC)
    claims = {
        "sub": identity,
        "username": username,
        "iat": now,
        "exp": now + lifetime,
        "iss": issuer,
        "aud": audience,
        "type": TOKEN_TYPE,
        "jti": str(uuid.uuid4()),
    }
    return pyjwt.encode(claims, signing.signing_key, algorithm=ALGORITHM, headers={"kid": signing.kid})


def _unverified_header(token: str) -> dict[str, Any]:
    """The token's header, to choose its key; trusted for nothing else."""
    segment = token.partition(".")[0]
    # Unpadded base64url of a length that can be valid: the decoder would skip other characters.
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise pyjwt.DecodeError("invalid header")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise pyjwt.DecodeError("invalid header") from None
    if not isinstance(header, dict):
        raise pyjwt.DecodeError("invalid header")
    return header


def decode_access_token(token: str) -> dict[str, Any]:
    """The claims of a valid access token; raises a PyJWTError (a 401) for any other token."""
    rules = _rules()
    header = _unverified_header(token)
    # Before any key is chosen; PyJWT checks the algorithm again against the one allowed.
    if header.get("alg") != ALGORITHM:
        raise pyjwt.InvalidAlgorithmError("algorithm not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnknownKey("no kid")
    claims = _verified_claims(token, _raw(rules.lookup_key(kid)), rules.audience, rules.issuer)
    # PyJWT's own test, for a token decoded earlier: expired from the second its exp names.
    if int(claims["exp"]) <= time.time():
        raise pyjwt.ExpiredSignatureError("Signature has expired")
    # A copy: the caller may change it, the kept one must not change.
    return dict(claims)


# About 1.3 KiB each (the token's text and its claims, measured): under 6 MiB a process when full.
VERIFIED_TOKENS_KEPT = 4096


@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified_claims(token: str, public_key: bytes, audience: str, issuer: str) -> dict[str, Any]:
    """Every check of a token, once per token, key and verifier (a token that fails is not kept:
    lru_cache keeps only what returns). The key goes by its bytes: key objects cannot be hashed,
    and the same key fetched again (images' JWKS) is the same key."""
    claims = pyjwt.decode(
        token,
        Ed25519PublicKey.from_public_bytes(public_key),
        algorithms=[ALGORITHM],
        audience=audience,
        issuer=issuer,
        leeway=0,
        options={"require": list(REQUIRED_CLAIMS)},
    )
    if claims.get("type") != TOKEN_TYPE:
        raise pyjwt.InvalidTokenError("not an access token")
    return claims


def user_id_of(claims: dict[str, Any]) -> int | None:
    """The user id a token's `sub` names, or None for a subject auth would never write."""
    subject = claims.get("sub")
    return int(subject) if isinstance(subject, str) and USER_ID.fullmatch(subject) else None


def bearer_token() -> str:
    """The request's bearer token, or a 401 (no Authorization header, another scheme, not a JWS)."""
    header = request.headers.get("Authorization", "")
    match = BEARER.fullmatch(header) if len(header) <= MAX_TOKEN_CHARACTERS else None
    if match is None:
        raise pyjwt.DecodeError("no bearer token")
    return match.group(1)


def token_required(view: Callable) -> Callable:
    """The view runs only for a valid access token whose user ``load_user`` finds: current_user."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        user = _rules().load_user(decode_access_token(bearer_token()))
        if user is None:
            raise pyjwt.InvalidTokenError("the token's user does not exist")
        g.token_user = user
        return view(*args, **kwargs)

    return checked


# The user of the request's token, inside a token_required view.
current_user: Any = LocalProxy(lambda: g.token_user)


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
