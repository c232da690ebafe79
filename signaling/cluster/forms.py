"""The JSON forms in which commands, actors, decisions and join claims cross between nodes.

Driven by the same type-hint codec as the ledger's events, so a command added to the core
crosses the cluster without a serializer of its own.
"""

from __future__ import annotations

import typing
from typing import Any

from signaling.core import commands as c
from signaling.core.codec import decode, encode
from signaling.core.events import from_record, to_record
from signaling.core.policy import Rejected
from signaling.core.session import Accepted, Decision
from signaling.ports import JoinClaims

_COMMANDS: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(c.Command)}


def command_record(command: c.Command) -> dict[str, Any]:
    return {"type": type(command).__name__, "fields": encode(command)}


def command_of(record: dict[str, Any]) -> c.Command:
    """Rebuild a command; ValueError for a type this node does not know."""
    cls = _COMMANDS.get(str(record.get("type")))
    if cls is None:
        raise ValueError(f"unknown command {record.get('type')!r}")
    return typing.cast(c.Command, decode(cls, record.get("fields", {})))


def actor_record(actor: c.Actor) -> dict[str, Any]:
    return typing.cast(dict[str, Any], encode(actor))


def actor_of(record: dict[str, Any]) -> c.Actor:
    return typing.cast(c.Actor, decode(c.Actor, record))


def decision_record(decision: Decision) -> dict[str, Any]:
    if isinstance(decision, Rejected):
        return {"rejected": {"code": decision.code, "message": decision.message}}
    return {"events": [to_record(event) for event in decision.events]}


def decision_of(record: dict[str, Any]) -> Decision:
    rejected = record.get("rejected")
    if isinstance(rejected, dict):
        return Rejected(rejected["code"], rejected["message"])
    return Accepted(tuple(from_record(r) for r in record.get("events", [])))


def rejected_record(rejected: Rejected | None) -> dict[str, Any] | None:
    return None if rejected is None else {"code": rejected.code, "message": rejected.message}


def rejected_of(record: Any) -> Rejected | None:
    return None if record is None else Rejected(record["code"], record["message"])


def claims_record(claims: JoinClaims) -> dict[str, Any]:
    return typing.cast(dict[str, Any], encode(claims))


def claims_of(record: dict[str, Any]) -> JoinClaims:
    return typing.cast(JoinClaims, decode(JoinClaims, record))
