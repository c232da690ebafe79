"""Join tokens: short-lived EdDSA JWTs that carry who joins which session in which role.

Signed with the key ring's Ed25519 token key, so a token cannot be forged or altered, and
verified at Socket.IO connect. The claims are the v1 contract's: sub, name, role, sid, exp
(plus jti, so one invite can be revoked, and aud, so no other JWT of ours is accepted).
Expiry is checked against the server's clock (`server.clock`), not PyJWT's own reading of
the machine's time, so a server with a moved clock judges its own tokens consistently.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.clock import Clock
from signaling.core.model import Role
from signaling.ports import JoinClaims, TokenRejected

AUDIENCE = "circle-join"
LEEWAY_S = 5
INVALID = "this join link is not valid"
EXPIRED = "this join link has expired; ask the clinic for a new one"


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
        claims = {
            "sub": participant_id,
            "name": name,
            "role": role,
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
                    "require": ["sub", "name", "role", "sid", "jti", "exp", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise TokenRejected(INVALID) from None
        self._check_times(claims)
        role = claims["role"]
        fields = (claims["sub"], claims["name"], claims["sid"], claims["jti"])
        if role not in ("client", "therapist") or not all(isinstance(f, str) for f in fields):
            raise TokenRejected(INVALID)
        return JoinClaims(
            participant_id=claims["sub"],
            name=claims["name"],
            role=role,
            session_id=claims["sid"],
            token_id=claims["jti"],
        )

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
