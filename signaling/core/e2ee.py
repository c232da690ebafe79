"""End-to-end encrypted sessions: who may receive whose media keys.

The browsers do the cryptography (client/web/src/e2ee): each connection brings a public
key, and a sender wraps its media key to each roommate's. The server's part is only to
refuse connections that cannot take part, and to route each wrapped key to a participant
who may hear the sender now: admitted, in the sender's room, holding a key. Routing more
widely would not leak the key (it is wrapped), but it would let a waiting or moved
participant learn that a key changed, so the rule is enforced here as well as in the
browsers. Pure, like chat.py: the edge delivers what this returns.
"""

from __future__ import annotations

from typing import Any

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import SessionState, is_clinician
from signaling.core.policy import Rejected
from signaling.core.views import peer_ref

NO_KEY = Rejected(
    "conflict",
    "this session is end-to-end encrypted and this app cannot encrypt media: join from a "
    "current Chrome, Edge, Firefox or Safari",
)
"""Why a connection without a public key is refused from an e2ee session (the Python
client is one: aiortc has no hook on encoded frames)."""

NOT_E2EE = Rejected("conflict", "this session is not end-to-end encrypted")


def decide_delivery(state: SessionState) -> list[e.Event] | Rejected:
    """Media keys are never recorded; only an e2ee session has any to route."""
    if state.info is None or not state.info.e2ee:
        return NOT_E2EE
    return []


def key_deliveries(
    state: SessionState, sender_id: str, keys: tuple[c.MediaKeyEnvelope, ...]
) -> list[tuple[str, dict[str, Any]]]:
    """(receiver id, `e2ee_key` payload) for each envelope whose recipient is admitted, in
    the sender's room, and holds a public key; the rest are dropped."""
    sender = state.participants.get(sender_id)
    if sender is None or sender.room is None or not sender.public_key:
        return []
    roommates = {
        p.handle: p for p in state.admitted()
        if p.room == sender.room and p.public_key and p.id != sender.id
    }
    deliveries: list[tuple[str, dict[str, Any]]] = []
    for envelope in keys:
        receiver = roommates.get(envelope.to)
        if receiver is None:
            continue
        deliveries.append((receiver.id, {
            "from": peer_ref(sender, full=is_clinician(receiver.role)),
            "handle": sender.handle, "key": sender.public_key,
            "epoch": envelope.epoch, "kid": envelope.kid, "wrapped": envelope.wrapped,
        }))
    return deliveries
