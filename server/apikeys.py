"""API keys for staff and integrations: issued once in plaintext, stored only as a hash.

Keys look like `ck_<id>_<secret>`. The id finds the row without scanning; the secret has
256 bits of entropy, so a plain SHA-256 of it is as strong as a slow password hash would be
(no dictionary to attack) and keeps every HTTP request cheap to authenticate.

Each key carries scopes, so a leaked scheduler key cannot export attendance or invite a
clinician. The roles of earlier releases are shorthands for sets of scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from server.storage.api_key_store import SqlApiKeyStore, StoredApiKey
from signaling.core.model import Role as ParticipantRole
from signaling.core.model import is_clinician

Scope = Literal["schedule", "therapist-invites", "attendance", "admin"]
"""schedule: sessions, client invites, revoking invites, saved breakout plans;
therapist-invites: invites with a clinician role; attendance: exports, totals, disclosures;
admin: everything, key management and the node listing included."""
SCOPES: tuple[Scope, ...] = get_args(Scope)

Role = Literal["staff", "admin"]
ROLE_SCOPES: Mapping[Role, frozenset[Scope]] = {
    "staff": frozenset({"schedule", "therapist-invites", "attendance"}),
    "admin": frozenset({"admin"}),
}
CUSTOM_LABEL = "custom"
"""The stored role label of a key whose scopes are no role's."""

PREFIX = "ck_"


def scopes_of(access: Role | Iterable[Scope]) -> frozenset[Scope]:
    """The scopes a role stands for, or `access` checked and normalised as scopes.

    `admin` already grants everything, so scopes next to it are dropped: a listing then
    shows what the key can do, not what someone once typed.
    """
    if isinstance(access, str):
        if access not in ROLE_SCOPES:
            raise ValueError(f"role must be one of {tuple(ROLE_SCOPES)}, got {access!r}")
        return ROLE_SCOPES[access]
    scopes = frozenset(access)
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; scopes are {SCOPES}")
    if not scopes:
        raise ValueError("an API key needs at least one scope")
    return ROLE_SCOPES["admin"] if "admin" in scopes else scopes


def invite_scope(role: ParticipantRole) -> Scope:
    """The scope an invite for `role` needs.

    A clinician's link (`therapist`, `co_therapist`) admits straight into the main room and
    runs the session, so it needs `therapist-invites`; a client's or a family member's waits
    to be admitted (`schedule`). A role added later is guarded until decided otherwise: only
    the roles listed as non-clinician ones need just `schedule`.
    """
    if role in NON_CLINICIAN_INVITES and not is_clinician(role):
        return "schedule"
    return "therapist-invites"


NON_CLINICIAN_INVITES: frozenset[str] = frozenset({"client", "family"})
"""Roles whose invites the `schedule` scope may issue."""


@dataclass(frozen=True)
class ApiKey:
    """An API key as the rest of the server sees it (never its secret or hash)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """False once revoked."""
        return self.revoked_at is None

    @property
    def role(self) -> Role | None:
        """The role whose shorthand these scopes are; None for any other set."""
        return next((r for r, s in ROLE_SCOPES.items() if s == self.scopes), None)

    def allows(self, scope: Scope) -> bool:
        """Whether this key may make calls that need `scope`."""
        return scope in self.scopes or "admin" in self.scopes


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _public(row: StoredApiKey) -> ApiKey:
    # Names this release does not know grant nothing (a row written by a newer Circle).
    scopes = frozenset(s for s in SCOPES if s in row.scopes)
    return ApiKey(row.id, row.name, scopes, row.created_at, row.revoked_at)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiKeys:
    """Creates, authenticates, lists and revokes API keys."""

    def __init__(self, store: SqlApiKeyStore, now: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._now = now

    async def create(self, access: Role | Iterable[Scope], name: str) -> tuple[str, ApiKey]:
        """Issue a key with a role's scopes or the given ones; returns (plaintext to show
        once, the key's record)."""
        scopes = scopes_of(access)
        if not name.strip():
            raise ValueError("an API key needs a name (who or what uses it)")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, scopes, self._now(), None)
        row = StoredApiKey(key_id, name, key.role or CUSTOM_LABEL, _hash(secret),
                           key.created_at, None, scopes)
        await self._store.insert(row)
        return f"{PREFIX}{key_id}_{secret}", key

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
