"""Issue 16, end-to-end encrypted sessions: the server's part, pure.

The browsers do the cryptography; the core refuses connections that cannot take part,
keeps each connection's public key, shows it to roommates, and routes wrapped media keys
only to those who may hear the sender now (admitted, same room, holding a key).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from signaling.core import commands as c
from signaling.core.e2ee import NO_KEY, key_deliveries
from signaling.core.model import BreakoutPlan, PlannedRoom
from signaling.core.session import replay
from signaling.core.translate import command_for
from signaling.core.views import second_device_view, view_for
from signaling.edge.gateway import _public_key
from signaling.protocol import ProtocolError, parse_client_event

from .core_helpers import STAFF, T0, Session, client, therapist


def public_key(n: int) -> str:
    """A string of the shape of a P-256 public key (the core never parses the point)."""
    return base64.urlsafe_b64encode(b"\x04" + bytes([n]) * 64).rstrip(b"=").decode()


def e2ee_session() -> Session:
    s = Session()
    s.ok(STAFF, c.CreateSession("s1", "Tuesday group", "group", "IOP", T0, 90, 60, e2ee=True))
    return s


def arrive(s: Session, pid: str, role: str = "client", key: str = "") -> None:
    actor = c.Actor.participant(pid, role)  # type: ignore[arg-type]
    s.ok(actor, c.Connect(pid, f"Name {pid}", role, f"tok-{pid}",  # type: ignore[arg-type]
                          device=f"dev-{pid}", public_key=key))


def group(*clients: str) -> Session:
    """An e2ee session: t1 and `clients` admitted, each with a key of its own."""
    s = e2ee_session()
    arrive(s, "t1", "therapist", public_key(1))
    for n, pid in enumerate(clients, start=2):
        arrive(s, pid, key=public_key(n))
        s.ok(therapist(), c.Admit(pid))
    return s


def envelope(to: str, epoch: int = 1) -> c.MediaKeyEnvelope:
    return c.MediaKeyEnvelope(to=to, epoch=epoch, kid="AAAAAA", wrapped="d3JhcHBlZA")


def handle(s: Session, pid: str) -> str:
    return s.state.participants[pid].handle


def test_a_connection_without_a_key_is_refused_with_the_reason() -> None:
    s = e2ee_session()
    refused = s.refused(client("c1"), c.Connect("c1", "Ann Lee", "client", "tok-c1"))
    assert refused == NO_KEY and refused.code == "conflict"
    assert "end-to-end encrypted" in refused.message
    refused = s.refused(therapist(), c.Connect("t1", "Dr Kim", "therapist", "tok-t1"))
    assert refused == NO_KEY, "clinicians too: nobody hears the room in the clear"


def test_keys_are_kept_in_e2ee_sessions_only() -> None:
    s = group("c1")
    assert s.state.participants["c1"].public_key == public_key(2)
    plain = Session.created()
    plain.ok(client("c1"), c.Connect("c1", "Ann", "client", "tok", public_key=public_key(2)))
    assert plain.state.participants["c1"].public_key == ""
    assert "key" not in view_for(plain.state, "c1")["you"]


def test_roommates_see_each_others_public_keys_and_the_session_says_e2ee() -> None:
    s = group("c1", "c2")
    view = view_for(s.state, "c1")
    assert view["session"]["e2ee"] is True and view["you"]["key"] == public_key(2)
    assert {p["handle"]: p["key"] for p in view["participants"]} == {
        handle(s, "t1"): public_key(1), handle(s, "c1"): public_key(2),
        handle(s, "c2"): public_key(3)}
    arrive(s, "c3", key=public_key(4))
    waiting = view_for(s.state, "c3")
    assert waiting["participants"] == [] and waiting["you"]["key"] == public_key(4)
    assert view_for(Session.created().state, "x")["session"]["e2ee"] is False


def test_media_keys_go_to_admitted_roommates_with_keys_only() -> None:
    s = group("c1", "c2")
    arrive(s, "c3", key=public_key(4))  # waiting: no key for it
    keys = (*(envelope(handle(s, pid)) for pid in ("t1", "c1", "c2", "c3")), envelope("p99"))
    delivered = key_deliveries(s.state, "c1", keys)
    assert [to for to, _ in delivered] == ["t1", "c2"], "not to itself, the waiting, unknowns"
    by = dict(delivered)
    assert by["t1"]["from"] == "c1", "clinicians know the real id"
    assert by["c2"]["from"] == handle(s, "c1"), "clients know the handle only"
    assert by["c2"] | {"from": None} == {
        "from": None, "handle": handle(s, "c1"), "key": public_key(2), "epoch": 1,
        "kid": "AAAAAA", "wrapped": "d3JhcHBlZA"}


def test_breakout_rooms_and_asides_do_not_exchange_keys() -> None:
    s = group("c1", "c2", "c3")
    rooms = (PlannedRoom("Room A", "", ("c1",), {}), PlannedRoom("Room B", "", ("c2",), {}))
    s.ok(therapist(), c.OpenBreakouts(plan=BreakoutPlan(minutes=10, rooms=rooms), seed=1))
    everyone = tuple(envelope(handle(s, pid)) for pid in ("t1", "c1", "c2", "c3"))
    assert key_deliveries(s.state, "c1", everyone) == [], "alone in room A"
    assert [to for to, _ in key_deliveries(s.state, "t1", everyone)] == ["c3"], "main room"
    s.ok(therapist(), c.CloseBreakouts(grace_s=0))
    s.ok(therapist(), c.OpenAside("c2"))
    assert [to for to, _ in key_deliveries(s.state, "t1", everyone)] == ["c2"]
    assert [to for to, _ in key_deliveries(s.state, "c1", everyone)] == ["c3"]


def test_sent_to_waiting_or_removed_means_no_more_keys() -> None:
    s = group("c1", "c2")
    s.ok(therapist(), c.SendToWaiting("c2"))
    keys = (envelope(handle(s, "c2")),)
    assert key_deliveries(s.state, "t1", keys) == []
    assert s.refused(client("c2"), c.DeliverMediaKeys(keys)).code == "forbidden"
    s.ok(therapist(), c.Remove("c1"))
    assert key_deliveries(s.state, "t1", (envelope(handle(s, "c1")),)) == []


def test_a_new_connection_brings_its_own_key_and_an_allowed_second_device_its_own() -> None:
    s = group("c1")
    s.ok(client("c1"), c.Connect("c1", "Name c1", "client", "tok-c1", device="dev-other",
                                 public_key=public_key(9)))  # c1 is connected: this waits
    assert s.state.participants["c1"].public_key == public_key(2)
    assert "key" not in second_device_view(s.state, "c1")["you"]
    s.ok(therapist(), c.DecideSecondDevice("c1", allow=True))
    assert s.state.participants["c1"].public_key == public_key(9)
    s.ok(client("c1"), c.Disconnect("c1", "dev-other"))
    s.ok(client("c1"), c.Connect("c1", "Name c1", "client", "tok-c1", device="dev-2",
                                 public_key=public_key(7)))
    assert s.state.participants["c1"].public_key == public_key(7)
    assert replay(s.events).participants["c1"].public_key == public_key(7), "replayable"


def test_keys_outside_an_e2ee_session_are_refused() -> None:
    s = Session.created()
    s.join("t1", "therapist")
    refused = s.refused(therapist(), c.DeliverMediaKeys((envelope("p2"),)))
    assert refused.code == "conflict" and "not end-to-end encrypted" in refused.message


def test_the_wire_form_of_media_keys() -> None:
    payload = parse_client_event("e2ee_keys", {"keys": [
        {"to": "p2", "epoch": 255, "kid": "AbC-_9", "wrapped": "x" * 80}]})
    assert command_for(payload, seed=0) == c.DeliverMediaKeys(
        (c.MediaKeyEnvelope("p2", 255, "AbC-_9", "x" * 80),))
    good = {"to": "p2", "epoch": 1, "kid": "AAAAAA", "wrapped": "eA"}
    bad: dict[str, Any]
    for bad in ({"keys": []}, {"keys": [good] * 65}, {"keys": [good | {"to": "c1"}]},
                {"keys": [good | {"epoch": 256}]}, {"keys": [good | {"kid": "AAA"}]},
                {"keys": [good | {"wrapped": "not base64!"}]},
                {"keys": [good | {"wrapped": "x" * 257}]}, {"keys": [good | {"extra": 1}]}):
        with pytest.raises(ProtocolError):
            parse_client_event("e2ee_keys", bad)


def test_the_gateway_takes_only_what_has_the_shape_of_a_public_key() -> None:
    assert _public_key(public_key(3)) == public_key(3)
    compressed = base64.urlsafe_b64encode(b"\x02" + b"\x01" * 32).rstrip(b"=").decode()
    for bad in (None, 42, "", compressed, public_key(3) + "A", public_key(3)[:-1] + "!"):
        assert _public_key(bad) == ""
