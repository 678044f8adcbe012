"""Token keys for the tests: Ed25519 key pairs, tokens signed exactly as auth signs them, and a
JWKS server a test controls (what it publishes, whether it answers at all)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from servicekit.tokens import generate_private_key_pem, key_id, public_jwk, public_pem

ISSUER = "platform-auth"
AUDIENCE = "platform"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(generate_private_key_pem())

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return load_pem_private_key(self.private_pem.encode(), password=None)

    @property
    def public_pem(self) -> str:
        return public_pem(self.private_key)

    @property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    @property
    def jwk(self) -> dict:
        return public_jwk(self.private_key.public_key())

    def claims(self, user_id: int | str = 1, username: str | None = "alice", **changes) -> dict:
        """The claims auth puts in an access token; a change to None removes the claim."""
        now = datetime.datetime.now(datetime.UTC)
        claims = {
            "sub": str(user_id),
            "username": username,
            "iat": now,
            "exp": now + datetime.timedelta(minutes=5),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "type": "access",
            "jti": str(uuid.uuid4()),
            "fresh": False,
        }
        claims.update(changes)
        return {key: value for key, value in claims.items() if value is not None}

    def sign(self, claims: dict, **headers) -> str:
        headers = {"kid": self.kid, **headers}
        return pyjwt.encode(
            claims, self.private_key, algorithm="EdDSA", headers={k: v for k, v in headers.items() if v}
        )

    def token(self, user_id: int | str = 1, username: str | None = "alice", **changes) -> str:
        return self.sign(self.claims(user_id, username, **changes))


@dataclass
class JwksServer:
    """A JWKS endpoint on a loopback port; ``publish`` changes what it serves, ``down`` makes
    it answer 503. ``fetches`` counts the requests it got."""

    keys: list[KeyPair] = field(default_factory=list)
    down: bool = False
    fetches: int = 0

    def start(self) -> JwksServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.fetches += 1
                if server.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"keys": [pair.jwk for pair in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"

    def publish(self, *keys: KeyPair) -> None:
        self.keys = list(keys)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass(frozen=True)
class TokenKeys:
    """The session's signing key, and the JWKS server that publishes its public half."""

    pair: KeyPair
    jwks: JwksServer

    @property
    def signing_pem(self) -> str:
        return self.pair.private_pem

    @property
    def jwks_url(self) -> str:
        return self.jwks.url


def _b64(data: bytes | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_signed(header: dict, claims: dict, secret: bytes, digest=hashlib.sha256) -> str:
    signing_input = f"{_b64(header)}.{_b64(json.loads(json.dumps(claims, default=_epoch)))}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _ed25519_signed(header: dict, claims: dict, pair: KeyPair) -> str:
    # By hand: PyJWT refuses to write some of the headers a forger would.
    signing_input = f"{_b64(header)}.{_b64(json.loads(json.dumps(claims, default=_epoch)))}"
    return f"{signing_input}.{_b64(pair.private_key.sign(signing_input.encode()))}"


def _epoch(value):
    return int(value.timestamp())


def forged_tokens(pair: KeyPair, good_token: str, user_id: int, username: str) -> dict[str, str | None]:
    """Every kind of bad token a verifier of ``pair``'s tokens must answer 401, by name.
    ``good_token`` is a token it accepts; None means no Authorization header at all."""
    header, payload, signature = good_token.split(".")
    claims = pair.claims(user_id, username)
    stranger = KeyPair.generate()
    encoded_claims = _b64(json.loads(json.dumps(claims, default=_epoch)))
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': pair.kid})}.{encoded_claims}"
    forged_payload = _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": str(user_id + 1)})
    now = datetime.datetime.now(datetime.UTC)
    return {
        "no authorization header": None,
        "empty bearer": "",
        "malformed": "not-a-jwt",
        "two segments": f"{header}.{payload}",
        "garbage segments": "a.b.c",
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "alg none": f"{unsigned}.",
        "alg none with signature": f"{unsigned}.{signature}",
        # The classic key confusion: the public key, which anyone can fetch, as an HMAC secret.
        "HS256 with the raw public key as secret": _hmac_signed(
            {"alg": "HS256", "typ": "JWT", "kid": pair.kid}, claims, pair.public_raw
        ),
        "HS256 with the public key PEM as secret": _hmac_signed(
            {"alg": "HS256", "typ": "JWT", "kid": pair.kid}, claims, pair.public_pem.encode()
        ),
        "HS512 with the public key PEM as secret": _hmac_signed(
            {"alg": "HS512", "typ": "JWT", "kid": pair.kid}, claims, pair.public_pem.encode(), hashlib.sha512
        ),
        "unknown kid": stranger.token(user_id, username),
        "known kid, signed by a key not in the JWKS": stranger.sign(claims, kid=pair.kid),
        "no kid": pair.sign(claims, kid=None),
        "kid not a string": _ed25519_signed({"alg": "EdDSA", "typ": "JWT", "kid": 7}, claims, pair),
        "expired": pair.token(
            user_id,
            username,
            iat=now - datetime.timedelta(minutes=10),
            exp=now - datetime.timedelta(seconds=1),
        ),
        "no expiry": pair.token(user_id, username, exp=None),
        "no issued-at": pair.token(user_id, username, iat=None),
        "wrong issuer": pair.token(user_id, username, iss="someone-else"),
        "no issuer": pair.token(user_id, username, iss=None),
        "wrong audience": pair.token(user_id, username, aud="other-app"),
        "no audience": pair.token(user_id, username, aud=None),
        "future nbf": pair.token(user_id, username, nbf=now + datetime.timedelta(minutes=10)),
        "refresh token type": pair.token(user_id, username, type="refresh"),
    }
