"""Check-in: the wire shape, who may check in when, `checkin_required`, replay, and the
export columns it feeds (place_of_service, patient_region, telehealth_consent). Pure core."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.attendance import project, to_csv, to_json
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.checkin import admit_all_reply, valid_region
from signaling.core.model import Role
from signaling.core.session import Accepted, replay
from signaling.core.translate import command_for
from signaling.core.views import view_for
from signaling.protocol import ProtocolError, parse_client_event
from tests.unit.core_helpers import STAFF, T0, Session, therapist

HOME = c.CheckIn("home", "CA", True)


def created(required: bool = False, kind: str = "group") -> Session:
    s = Session()
    s.ok(STAFF, c.CreateSession("s1", "Tuesday group", kind, "IOP", T0, 90, 60,  # type: ignore[arg-type]
                                checkin_required=required))
    s.join("t1", "therapist", "Dr Kim Park")
    return s


def who(pid: str, role: Role = "client") -> c.Actor:
    return c.Actor.participant(pid, role)


# -- the wire shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["CA", "ON", "NSW", "US-CA", "CA-ON", "FR-75", "GB-ENG"])
def test_state_and_province_codes_are_accepted(region: str) -> None:
    payload = parse_client_event("checkin", {"location": "home", "region": region,
                                             "consent": True})
    assert command_for(payload, seed=0) == c.CheckIn("home", region, True, False)
    assert valid_region(region)


@pytest.mark.parametrize("region", ["", "C", "ca", "Ca", "CALI", "US-", "USA-CA", "US-CALI",
                                    "U1", "12", " CA", "CA ", "US_CA", "CA\n"])
def test_anything_else_is_refused_with_a_readable_reason(region: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_event("checkin", {"location": "home", "region": region, "consent": True})
    assert refused.value.code == "invalid"
    assert "region" in refused.value.message
    assert not valid_region(region)


@pytest.mark.parametrize("data", [
    {"location": "work", "region": "CA", "consent": True},
    {"location": "home", "region": "CA", "consent": "yes"},
    {"location": "home", "region": "CA"},
    {"location": "home", "region": "CA", "consent": True, "name": "Ann"},
    {"location": "home", "region": "CA", "consent": True, "pledge": 1},
])
def test_a_malformed_check_in_is_invalid(data: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_event("checkin", data)
    assert refused.value.code == "invalid"


def test_the_pledge_is_optional_and_kept() -> None:
    payload = parse_client_event("checkin", {"location": "other", "region": "US-NY",
                                             "consent": False, "pledge": True})
    assert command_for(payload, seed=0) == c.CheckIn("other", "US-NY", False, True)


# -- who checks in, when ------------------------------------------------------------------------


def test_a_waiting_client_checks_in_and_the_therapist_sees_it_in_the_waiting_list() -> None:
    s = created()
    s.join("c1", "client", "Ann Lee")
    [event] = s.at(2).ok(who("c1"), c.CheckIn("home", "CA", True, True))
    assert event == e.CheckedIn(at=T0 + timedelta(minutes=2), participant_id="c1",
                                location="home", region="CA", consent=True, pledge=True)
    [entry] = view_for(s.state, "t1")["waiting"]
    assert entry["checkin"] == {"location": "home", "region": "CA", "consent": True,
                                "pledge": True, "at": (T0 + timedelta(minutes=2)).isoformat()}
    assert view_for(s.state, "c1")["you"]["checkin"]["region"] == "CA"


def test_a_waiting_list_entry_without_a_check_in_says_null() -> None:
    s = created()
    s.join("c1")
    [entry] = view_for(s.state, "t1")["waiting"]
    assert entry["checkin"] is None
    assert view_for(s.state, "c1")["you"]["checkin"] is None


def test_checking_in_again_updates_and_the_same_answers_change_nothing() -> None:
    s = created()
    s.join("c1")
    s.ok(who("c1"), HOME)
    assert s.ok(who("c1"), HOME) == (), "the same answers again record nothing"
    s.ok(therapist(), c.Admit("c1"))
    [event] = s.at(20).ok(who("c1"), c.CheckIn("other", "NV", True))
    assert isinstance(event, e.CheckedIn)
    answers = s.state.participants["c1"].checkin
    assert answers is not None and (answers.location, answers.region) == ("other", "NV")


def test_therapists_see_check_ins_on_the_participants_and_clients_never_see_peers() -> None:
    s = created()
    s.join("c1", "client", "Ann Lee")
    s.join("c2", "client", "Bob Stone")
    s.ok(who("c1"), HOME)
    s.ok(therapist(), c.AdmitAll())
    people = {p["id"]: p for p in view_for(s.state, "t1")["participants"]}
    assert people["c1"]["checkin"]["location"] == "home"
    assert people["c2"]["checkin"] is None
    assert "checkin" not in people["t1"], "clinicians do not check in"
    for p in view_for(s.state, "c2")["participants"]:
        assert "checkin" not in p, "a client never sees another's check-in"


def test_a_family_member_checks_in_and_a_clinician_cannot() -> None:
    s = created(kind="family")
    s.join("f1", "family")
    s.ok(who("f1", "family"), HOME)
    s.join("t2", "co_therapist")
    for clinician in (therapist(), who("t2", "co_therapist")):
        refused = s.refused(clinician, HOME)
        assert (refused.code, refused.message) == (
            "forbidden", "only clients and family members check in")


def test_nobody_checks_in_after_leaving_or_being_denied() -> None:
    s = created()
    s.join("c1")
    s.join("c2")
    s.ok(who("c1"), c.Leave())
    s.ok(therapist(), c.Deny("c2", ""))
    assert s.refused(who("c1"), HOME).code == "conflict"
    assert s.refused(who("c2"), HOME).code == "conflict"
    assert s.refused(who("c9"), HOME).code == "forbidden", "not in the session at all"


def test_the_core_refuses_a_bad_region_even_without_the_wire_check() -> None:
    s = created()
    s.join("c1")
    assert s.refused(who("c1"), c.CheckIn("home", "california", True)).code == "invalid"


def test_a_check_in_survives_leaving_and_coming_back_to_the_same_session() -> None:
    s = created(required=True)
    s.join("c1")
    s.ok(who("c1"), HOME)
    s.ok(who("c1"), c.Leave())
    s.join("c1")
    assert s.status("c1") == "waiting"
    s.ok(therapist(), c.Admit("c1"))  # no second check-in needed


# -- checkin_required ---------------------------------------------------------------------------


def test_check_in_required_refuses_to_admit_who_has_not_checked_in() -> None:
    s = created(required=True)
    s.join("c1", "client", "Ann Lee")
    refused = s.refused(therapist(), c.Admit("c1"))
    assert refused == type(refused)("conflict",
                                    "Ann Lee has not checked in yet (location and consent)")
    s.ok(who("c1"), c.CheckIn("home", "CA", False))
    s.ok(therapist(), c.Admit("c1"))  # a "no" to consent is a check-in: the therapist decides
    assert s.status("c1") == "admitted"


def test_check_in_required_holds_family_members_too_but_never_clinicians() -> None:
    s = created(required=True, kind="family")
    s.join("f1", "family", "Rosa Lee")
    assert s.refused(therapist(), c.Admit("f1")).code == "conflict"
    s.join("t2", "co_therapist")
    assert s.status("t2") == "admitted"


def test_without_the_requirement_anyone_waiting_is_admitted() -> None:
    s = created(required=False)
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    assert s.status("c1") == "admitted"


def test_admit_all_admits_who_checked_in_and_says_how_many_still_wait() -> None:
    s = created(required=True)
    for pid in ("c1", "c2", "c3"):
        s.join(pid)
    s.ok(who("c2"), HOME)
    events = s.ok(therapist(), c.AdmitAll())
    assert [ev.participant_id for ev in events if isinstance(ev, e.Admitted)] == ["c2"]
    assert [p.id for p in s.state.waiting()] == ["c1", "c3"]
    assert admit_all_reply(s.state, events) == {
        "admitted": 1, "left_waiting": 2,
        "message": "Admitted 1; 2 still waiting: have not checked in yet"}
    s.ok(who("c3"), HOME)
    events = s.ok(therapist(), c.AdmitAll())
    assert admit_all_reply(s.state, events) == {
        "admitted": 1, "left_waiting": 1,
        "message": "Admitted 1; 1 still waiting: has not checked in yet"}


def test_admit_all_without_the_requirement_reports_nobody_left() -> None:
    s = created()
    s.join("c1")
    events = s.ok(therapist(), c.AdmitAll())
    assert admit_all_reply(s.state, events) == {"admitted": 1, "left_waiting": 0}


# -- replay -------------------------------------------------------------------------------------


def test_replaying_the_stored_records_rebuilds_check_ins_and_the_requirement() -> None:
    s = created(required=True)
    s.join("c1")
    s.at(1).ok(who("c1"), c.CheckIn("other", "US-WA", True, True))
    s.at(2).ok(therapist(), c.Admit("c1"))
    stored = [e.from_record(e.to_record(ev)) for ev in s.events]
    assert stored == s.events
    rebuilt = replay(stored)
    assert rebuilt == s.state
    assert rebuilt.info is not None and rebuilt.info.checkin_required
    assert rebuilt.participants["c1"].checkin == s.state.participants["c1"].checkin


# -- the export columns -------------------------------------------------------------------------


def columns(s: Session, pid: str = "c1") -> tuple[str, str, bool | None]:
    [row] = [r for r in project(s.events, as_of=T0 + timedelta(hours=3))
             if r.participant_id == pid]
    return row.place_of_service, row.patient_region, row.telehealth_consent


def test_home_is_pos_10_elsewhere_02_and_none_is_empty() -> None:
    s = created()
    for pid in ("c1", "c2", "c3"):
        s.join(pid)
    s.ok(who("c1"), c.CheckIn("home", "CA", True))
    s.ok(who("c2"), c.CheckIn("other", "ON", False))
    s.at(1).ok(therapist(), c.AdmitAll())
    s.at(80).ok(therapist(), c.End())
    assert columns(s, "c1") == ("10", "CA", True)
    assert columns(s, "c2") == ("02", "ON", False)
    assert columns(s, "c3") == ("", "", None)
    rows = project(s.events, as_of=T0 + timedelta(hours=3))
    parsed = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(to_csv(rows)))}
    assert [(parsed[p]["place_of_service"], parsed[p]["patient_region"],
             parsed[p]["telehealth_consent"]) for p in ("c1", "c2", "c3")] == [
        ("10", "CA", "true"), ("02", "ON", "false"), ("", "", "")]
    as_json = {r["participant_id"]: r for r in to_json(rows)["rows"]}
    assert [as_json[p]["telehealth_consent"] for p in ("c1", "c2", "c3")] == [True, False, None]
    assert as_json["c1"]["place_of_service"] == "10" and as_json["t1"]["place_of_service"] == ""


def test_the_last_check_in_before_the_presence_ended_counts() -> None:
    s = created()
    s.join("c1")
    s.at(0).ok(who("c1"), c.CheckIn("home", "CA", True))
    s.at(1).ok(therapist(), c.Admit("c1"))
    s.at(30).ok(who("c1"), c.CheckIn("other", "NV", True))  # moved during the session
    s.at(50).ok(who("c1"), c.Leave())
    s.at(55).join("c1")  # back in the waiting room, never admitted again
    s.at(56).ok(who("c1"), c.CheckIn("home", "OR", False))
    s.at(80).ok(therapist(), c.End())
    assert columns(s) == ("02", "NV", True), "a check-in after the presence is not the visit's"


def test_a_no_show_who_checked_in_keeps_the_answers_on_the_row() -> None:
    s = created()
    s.join("c1")
    s.ok(who("c1"), c.CheckIn("other", "TX", True))
    s.at(80).ok(therapist(), c.End())
    [row] = [r for r in project(s.events, as_of=T0 + timedelta(hours=3))
             if r.participant_id == "c1"]
    assert (row.status, row.place_of_service, row.patient_region) == ("no_show", "02", "TX")


checkins = st.lists(
    st.tuples(st.integers(min_value=0, max_value=89), st.sampled_from(["home", "other"]),
              st.sampled_from(["CA", "ON", "US-WA"]), st.booleans()),
    max_size=5,
).map(lambda xs: sorted(xs, key=lambda x: x[0]))


@settings(max_examples=150, deadline=None)
@given(checkins, st.integers(min_value=0, max_value=60), st.integers(min_value=1, max_value=60),
       st.booleans())
def test_the_columns_are_the_last_check_in_at_or_before_time_out(
    answers: list[tuple[int, str, str, bool]], admit_at: int, stay: int, required: bool,
) -> None:
    s = created(required=required)
    s.join("c1")
    admitted = leave_at = None
    for minute in sorted({a[0] for a in answers} | {admit_at, admit_at + stay}):
        s.at(minute)
        for _, location, region, consent in (a for a in answers if a[0] == minute):
            if s.status("c1") in ("waiting", "admitted"):
                s.ok(who("c1"), c.CheckIn(location, region, consent))  # type: ignore[arg-type]
        if (minute == admit_at and s.status("c1") == "waiting"
                and isinstance(s.do(therapist(), c.Admit("c1")), Accepted)):
            admitted = minute
        if minute == admit_at + stay and s.status("c1") == "admitted":
            s.ok(who("c1"), c.Leave())
            leave_at = minute
    s.at(95).ok(therapist(), c.End())
    recorded = [ev for ev in s.events if isinstance(ev, e.CheckedIn)]
    [row] = [r for r in project(s.events, as_of=T0 + timedelta(hours=3))
             if r.participant_id == "c1"]
    if required and admitted is not None:
        assert any(ev.at <= T0 + timedelta(minutes=admitted) for ev in recorded), \
            "nobody is admitted before checking in when the session requires it"
    end = row.time_out
    counted = [ev for ev in recorded if end is None or ev.at <= end]
    if not counted:
        assert (row.place_of_service, row.patient_region, row.telehealth_consent) == ("", "", None)
    else:
        last = counted[-1]
        assert row.place_of_service == {"home": "10", "other": "02"}[last.location]
        assert (row.patient_region, row.telehealth_consent) == (last.region, last.consent)
    assert row.billable and row.service == "group_psychotherapy"
    assert leave_at is None or row.time_out == T0 + timedelta(minutes=leave_at)
