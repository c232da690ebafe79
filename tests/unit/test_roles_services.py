"""Services and roles: a session's service, family members and co-therapists, pure core.

No clock, sockets or sleeps: sessions are driven through `decide`/`apply` at chosen times
(tests/unit/core_helpers.py), and rows are projected from the events they recorded.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.apikeys import invite_scope
from server.attendance import project, to_csv, to_json
from server.attendance.rows import COLUMNS
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.chat import chat_deliveries
from signaling.core.model import (
    CLINICIAN_ROLES,
    DEFAULT_SERVICE,
    Role,
    Service,
    SessionKind,
    is_billable,
    is_clinician,
)
from signaling.core.notices import help_notices
from signaling.core.session import replay
from signaling.core.views import view_for
from tests.unit.core_helpers import STAFF, T0, Session, therapist

SERVICES: tuple[Service, ...] = get_args(Service)


def created(kind: SessionKind = "group", service: Service | None = None) -> Session:
    s = Session()
    s.ok(STAFF, c.CreateSession("s1", "Tuesday group", kind, "IOP", T0, 90, 60,
                                service=service))
    return s


def actor(pid: str, role: Role) -> c.Actor:
    return c.Actor.participant(pid, role)


# -- services -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "service"), [
    ("group", "group_psychotherapy"),
    ("family", "family_psychotherapy"),
    ("individual", "individual_psychotherapy"),
])
def test_the_service_defaults_from_the_kind(kind: SessionKind, service: Service) -> None:
    s = created(kind)
    assert s.state.info is not None and s.state.info.service == service
    [event] = s.events
    assert isinstance(event, e.SessionCreated) and event.service == service, \
        "the default is written into the record, not left for later code to guess"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_kept_as_given(service: Service) -> None:
    s = created("individual", service)
    assert s.state.info is not None and s.state.info.service == service
    assert len(SERVICES) == 8


def test_a_session_created_before_services_replays_with_its_kinds_default() -> None:
    record = e.to_record(e.SessionCreated(
        at=T0, session_id="s1", title="Old", kind="family", program="OP", starts_at=T0,
        minutes=60, reconnect_grace_s=60, created_by="key1"))
    del record["service"], record["checkin_required"]  # as an older release stored it
    state = replay([e.from_record(record)])
    assert state.info is not None
    assert (state.info.service, state.info.checkin_required) == ("family_psychotherapy", False)
    pid = "c1"
    [row] = project([e.from_record(record), e.InviteIssued(
        at=T0, participant_id=pid, display_name="Ann", role="client", token_id=f"tok-{pid}",
        expires_at=T0 + timedelta(days=1), issued_by="key1")], as_of=T0 + timedelta(hours=2))
    assert row.service == "family_psychotherapy"


def test_the_default_table_covers_every_kind() -> None:
    assert set(DEFAULT_SERVICE) == set(get_args(SessionKind))
    assert set(DEFAULT_SERVICE.values()) <= set(SERVICES)


# -- roles --------------------------------------------------------------------------------------


def test_clinicians_are_the_therapist_and_the_co_therapist_only() -> None:
    assert {r for r in get_args(Role) if is_clinician(r)} == {"therapist", "co_therapist"}
    assert {"therapist", "co_therapist"} == CLINICIAN_ROLES
    assert {r for r in get_args(Role) if is_billable(r)} == {"client"}
    assert not is_clinician(None) and not is_clinician("supervisor")


def test_a_family_member_waits_and_is_admitted_like_a_client() -> None:
    s = created("family")
    s.join("t1", "therapist")
    s.join("f1", "family", "Rosa Lee")
    assert s.status("f1") == "waiting"
    s.ok(therapist(), c.Admit("f1"))
    assert s.status("f1") == "admitted"


def test_a_family_member_is_kept_out_of_a_locked_session_like_a_client() -> None:
    s = created("family")
    s.join("t1", "therapist")
    s.ok(therapist(), c.Lock(True))
    refused = s.refused(actor("f1", "family"), c.Connect("f1", "Rosa", "family", "tok-f1"))
    assert refused.code == "conflict"


def test_a_co_therapist_is_admitted_at_once_even_into_a_locked_session() -> None:
    s = created()
    s.join("t1", "therapist")
    s.ok(therapist(), c.Lock(True))
    s.join("t2", "co_therapist", "Dr Sam Roe")
    assert s.status("t2") == "admitted"


def test_a_co_therapist_can_run_every_therapist_command() -> None:
    s = created()
    s.join("t2", "co_therapist")
    co = actor("t2", "co_therapist")
    for pid in ("c1", "c2", "c3"):
        s.join(pid)
    s.ok(co, c.Admit("c1"))
    s.ok(co, c.Mute("c1", "audio", True))
    assert s.state.participants["c1"].muted_audio
    s.ok(co, c.Deny("c2", "not today"))
    s.ok(co, c.AdmitAll())
    assert s.status("c3") == "admitted"
    s.ok(co, c.Remove("c3"))
    assert s.status("c3") == "removed"
    s.ok(co, c.Lock(True))
    s.ok(co, c.MessageWaiting("hello", None))
    s.ok(co, c.End())
    assert s.state.ended


@pytest.mark.parametrize("command", [
    c.Admit("c2"), c.AdmitAll(), c.Mute("c1", "audio", True), c.Remove("c1"),
    c.Deny("c2", ""), c.Lock(True), c.End(), c.MessageWaiting("hi", None),
])
def test_a_family_member_cannot_run_a_therapist_command(command: c.Command) -> None:
    s = created("family")
    s.join("t1", "therapist")
    s.join("f1", "family")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.Admit("f1"))
    s.ok(therapist(), c.Admit("c1"))
    refused = s.refused(actor("f1", "family"), command)
    assert (refused.code, refused.message) == ("forbidden", "therapists only")


def test_a_co_therapist_sees_what_therapists_see_and_family_what_clients_see() -> None:
    s = created("family")
    s.join("t1", "therapist", "Dr Kim Park")
    s.join("t2", "co_therapist", "Dr Sam Roe")
    s.join("c1", "client", "Ann Lee")
    s.join("f1", "family", "Rosa Lee")
    s.join("c9", "client", "Bob Stone")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.Admit("f1"))
    co = view_for(s.state, "t2")
    assert [w["id"] for w in co["waiting"]] == ["c9"]
    assert {p["id"] for p in co["participants"]} == {"t1", "t2", "c1", "f1"}
    assert {p["name"] for p in co["participants"]} >= {"Ann Lee", "Rosa Lee"}
    family = view_for(s.state, "f1")
    assert "waiting" not in family and "expected" not in family
    ids = {p["id"] for p in family["participants"]}
    assert ids.isdisjoint({"t1", "t2", "c1"}), "a family member never gets another's id"
    assert ids == {p["handle"] for p in family["participants"]}
    assert {p["name"] for p in family["participants"]} == {"Dr", "Ann", "Rosa"}


def test_help_notices_and_chat_treat_the_co_therapist_as_a_clinician() -> None:
    s = created()
    s.join("t2", "co_therapist")
    s.join("c1", "client", "Ann Lee")
    s.join("f1", "family", "Rosa Lee")
    s.ok(actor("t2", "co_therapist"), c.AdmitAll())
    assert [pid for pid, _ in help_notices(s.state, "c1")] == ["t2"]
    to = dict(chat_deliveries(s.state, "c1", "hi", T0.isoformat()))
    assert (to["t2"]["from"], to["t2"]["name"]) == ("c1", "Ann Lee")
    assert (to["f1"]["from"], to["f1"]["name"]) == (s.state.participants["c1"].handle, "Ann")


def test_auto_breakouts_split_clients_and_family_and_leave_clinicians_out() -> None:
    s = created("family")
    s.join("t1", "therapist")
    s.join("t2", "co_therapist")
    s.join("c1")
    s.join("f1", "family")
    s.ok(therapist(), c.AdmitAll())
    from signaling.core.model import BreakoutPlan
    s.ok(therapist(), c.OpenBreakouts(BreakoutPlan(minutes=10, auto_count=1), seed=7))
    [room] = s.state.breakouts.rooms
    assert set(room.members) == {"c1", "f1"}


def test_invites_for_clinicians_need_the_therapist_scope_and_family_the_schedule_one() -> None:
    assert invite_scope("family") == "schedule"
    assert invite_scope("co_therapist") == "therapist-invites"


def test_join_tokens_carry_the_new_roles() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from server.auth.tokens import JoinTokenService

    key = Ed25519PrivateKey.generate()
    tokens = JoinTokenService(key, key.public_key(), clock=lambda: T0)
    for role in get_args(Role):
        issued = tokens.issue(session_id="s1", participant_id="p", name="N", role=role,
                              ttl_s=600)
        assert tokens.verify(issued.token).role == role


# -- the record ---------------------------------------------------------------------------------


def _session_of_every_role() -> Session:
    s = created("family", "family_psychotherapy")
    s.join("t1", "therapist")
    s.join("t2", "co_therapist")
    s.join("c1", "client", "Ann Lee")
    s.join("f1", "family", "Rosa Lee")
    s.at(1).ok(therapist(), c.AdmitAll())
    s.at(80).ok(therapist(), c.End())
    return s


def test_rows_carry_the_service_and_only_the_client_is_billable() -> None:
    s = _session_of_every_role()
    rows = project(s.events, as_of=T0 + timedelta(hours=3))
    assert [(r.participant_id, r.role, r.billable) for r in rows] == [
        ("t1", "therapist", False), ("t2", "co_therapist", False),
        ("c1", "client", True), ("f1", "family", False),
    ], "clinicians first, then clients, then family members"
    assert {r.service for r in rows} == {"family_psychotherapy"}
    [client] = [r for r in rows if r.role == "client"]
    assert client.minutes_present > 0


def test_csv_and_json_agree_on_service_and_billable() -> None:
    rows = project(_session_of_every_role().events, as_of=T0 + timedelta(hours=3))
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    json_rows = to_json(rows)["rows"]
    assert [(p["service"], p["billable"]) for p in parsed] == [
        (j["service"], "true" if j["billable"] else "false") for j in json_rows]
    assert [j["billable"] for j in json_rows] == [False, False, True, False]
    assert list(json_rows[0]) == list(COLUMNS)


@given(st.lists(st.sampled_from(get_args(Role)), min_size=1, max_size=8),
       st.sampled_from(get_args(SessionKind)), st.none() | st.sampled_from(SERVICES))
def test_billable_is_exactly_the_client_role_and_service_is_the_sessions(
    roles: list[Role], kind: SessionKind, service: Service | None,
) -> None:
    s = created(kind, service)
    for i, role in enumerate(roles):
        s.ok(STAFF, c.IssueInvite(f"p{i}", f"Name {i}", role, f"tok{i}",
                                  T0 + timedelta(days=1)))
    rows = project(s.events, as_of=T0 + timedelta(hours=3))
    assert len(rows) == len(roles)
    assert all(r.billable == (r.role == "client") for r in rows)
    assert {r.service for r in rows} == {service or DEFAULT_SERVICE[kind]}
