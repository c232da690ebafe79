"""Join tokens: short-lived EdDSA JWTs that carry who joins which session in which role.

Signed with the key ring's Ed25519 token key, so a token cannot be forged or altered, and
verified at Socket.IO connect. The claims are the v1 contract's: sub, name, role, sid, exp
(plus jti, so one invite can be revoked, and aud, so no other JWT of ours is accepted).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from signaling.gateway import JoinClaims, TokenRejected
from signaling.model import Role

AUDIENCE = "circle-join"
LEEWAY_S = 5


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: datetime


class JoinTokenService:
    """Issues and verifies join tokens (implements `signaling.gateway.JoinTokens`)."""

    def __init__(self, private_key: Ed25519PrivateKey, public_key: Ed25519PublicKey) -> None:
        self._private = private_key
        self._public = public_key

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
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
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
                leeway=LEEWAY_S,
                options={"require": ["sub", "name", "role", "sid", "jti", "exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            expired = "this join link has expired; ask the clinic for a new one"
            raise TokenRejected(expired) from None
        except jwt.PyJWTError:
            raise TokenRejected("this join link is not valid") from None
        role = claims["role"]
        fields = (claims["sub"], claims["name"], claims["sid"], claims["jti"])
        if role not in ("client", "therapist") or not all(isinstance(f, str) for f in fields):
            raise TokenRejected("this join link is not valid")
        return JoinClaims(
            participant_id=claims["sub"],
            name=claims["name"],
            role=role,
            session_id=claims["sid"],
            token_id=claims["jti"],
        )
