"""Join tokens: short-lived EdDSA JWTs that carry who joins which session in which role.

Signed with the key ring's Ed25519 token key, so a token cannot be forged or altered, and
verified at Socket.IO connect. A join link travels by e-mail and text message and a JWT's
body is only base64, so who the link is for (participant id, name, role) is sealed with
AES-256-GCM in one claim, `who`, under a key derived from the token key: the readable
claims are only sid (the routing key of the session), jti (so one invite can be revoked),
aud (so no other JWT of ours is accepted), iat and exp.
Expiry is checked against the server's clock (`server.clock`), not PyJWT's own reading of
the machine's time, so a server with a moved clock judges its own tokens consistently.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.clock import Clock
from signaling.core.model import Role
from signaling.ports import JoinClaims, TokenRejected

AUDIENCE = "circle-join"
LEEWAY_S = 5
INVALID = "this join link is not valid"
EXPIRED = "this join link has expired; ask the clinic for a new one"
_SEAL_INFO = b"circle join token: who v1"
_NONCE_BYTES = 12
ROLES: frozenset[str] = frozenset(get_args(Role))
"""Every participant role (client, family, therapist, co_therapist): what a token may carry."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: datetime


class JoinTokenService:
    """Issues and verifies join tokens (implements `signaling.ports.JoinTokens`)."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        public_key: Ed25519PublicKey,
        clock: Clock = _utc_now,
    ) -> None:
        self._private = private_key
        self._public = public_key
        self._clock = clock
        self._seal = AESGCM(_seal_key(private_key))

    def issue(
        self,
        *,
        session_id: str,
        participant_id: str,
        name: str,
        role: Role,
        ttl_s: int,
        now: datetime | None = None,
    ) -> IssuedToken:
        issued = (now or self._clock()).replace(microsecond=0)
        expires = issued + timedelta(seconds=ttl_s)
        token_id = secrets.token_urlsafe(12)
        who = {"sub": participant_id, "name": name, "role": role}
        claims = {
            "who": self._seal_who(who, session_id, token_id),
            "sid": session_id,
            "jti": token_id,
            "aud": AUDIENCE,
            "iat": issued,
            "exp": expires,
        }
        token = jwt.encode(claims, self._private, algorithm="EdDSA")
        return IssuedToken(token=token, token_id=token_id, expires_at=expires)

    def verify(self, token: str) -> JoinClaims:
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                options={
                    "require": ["who", "sid", "jti", "exp", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise TokenRejected(INVALID) from None
        self._check_times(claims)
        session_id, token_id = claims["sid"], claims["jti"]
        if not isinstance(session_id, str) or not isinstance(token_id, str):
            raise TokenRejected(INVALID)
        who = self._open_who(claims["who"], session_id, token_id)
        role = who.get("role")
        fields = (who.get("sub"), who.get("name"))
        if role not in ROLES or not all(isinstance(f, str) for f in fields):
            raise TokenRejected(INVALID)
        return JoinClaims(
            participant_id=who["sub"],
            name=who["name"],
            role=role,
            session_id=session_id,
            token_id=token_id,
        )

    def _seal_who(self, who: dict[str, str], session_id: str, token_id: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = json.dumps(who, separators=(",", ":")).encode()
        sealed = self._seal.encrypt(nonce, body, _bound_to(session_id, token_id))
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def _open_who(self, sealed: Any, session_id: str, token_id: str) -> dict[str, Any]:
        """The sealed claim, which only opens inside the token it was sealed into."""
        if not isinstance(sealed, str):
            raise TokenRejected(INVALID)
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            body = self._seal.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                      _bound_to(session_id, token_id))
            who = json.loads(body)
        except (ValueError, InvalidTag):
            raise TokenRejected(INVALID) from None
        if not isinstance(who, dict):
            raise TokenRejected(INVALID)
        return who

    def _check_times(self, claims: dict[str, Any]) -> None:
        """PyJWT's exp/iat/nbf rules, judged by the server's clock."""
        now = self._clock().timestamp()
        try:
            expires = float(claims["exp"])
            not_before = max(float(claims.get("iat", 0)), float(claims.get("nbf", 0)))
        except (TypeError, ValueError):
            raise TokenRejected(INVALID) from None
        if expires <= now - LEEWAY_S:
            raise TokenRejected(EXPIRED)
        if not_before > now + LEEWAY_S:
            raise TokenRejected(INVALID)


def _bound_to(session_id: str, token_id: str) -> bytes:
    """Associated data: a sealed `who` moved into another token (or session) fails to open."""
    return json.dumps([session_id, token_id]).encode()


def _seal_key(private_key: Ed25519PrivateKey) -> bytes:
    """A key of its own for sealing, derived from the token key: every node of a clinic has
    the same key ring, so every node opens every token, and no new secret needs keeping."""
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(raw)
