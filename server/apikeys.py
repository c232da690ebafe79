"""API keys for staff and integrations: issued once in plaintext, stored only as a hash.

Keys look like `ck_<id>_<secret>`. The id finds the row without scanning; the secret has
256 bits of entropy, so a plain SHA-256 of it is as strong as a slow password hash would be
(no dictionary to attack) and keeps every HTTP request cheap to authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from server.storage.api_key_store import SqlApiKeyStore, StoredApiKey

Role = Literal["staff", "admin"]
PREFIX = "ck_"


@dataclass(frozen=True)
class ApiKey:
    """An API key as the rest of the server sees it (never its secret or hash)."""

    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """False once revoked."""
        return self.revoked_at is None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _public(row: StoredApiKey) -> ApiKey:
    return ApiKey(row.id, row.name, cast(Role, row.role), row.created_at, row.revoked_at)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiKeys:
    """Creates, authenticates, lists and revokes API keys."""

    def __init__(self, store: SqlApiKeyStore, now: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._now = now

    async def create(self, role: Role, name: str) -> tuple[str, ApiKey]:
        """Issue a key; returns (plaintext to show once, the key's record)."""
        if role not in get_args(Role):
            raise ValueError(f"role must be one of {get_args(Role)}, got {role!r}")
        if not name.strip():
            raise ValueError("an API key needs a name (who or what uses it)")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = StoredApiKey(key_id, name, role, _hash(secret), self._now(), None)
        await self._store.insert(row)
        return f"{PREFIX}{key_id}_{secret}", _public(row)

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        """The live key `plaintext` belongs to; None if malformed, unknown or revoked."""
        if not plaintext.startswith(PREFIX):
            return None
        key_id, sep, secret = plaintext[len(PREFIX) :].partition("_")
        if not sep or not key_id or not secret:
            return None
        row = await self._store.get(key_id)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(_hash(secret), row.secret_hash):
            return None
        return _public(row)

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; False if it is unknown or already revoked."""
        return await self._store.revoke(key_id, self._now())

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return [_public(r) for r in await self._store.all()]
