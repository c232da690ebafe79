"""What each receiver may see: the privacy rules of the `state` view."""

from __future__ import annotations

from signaling.core import commands as c
from signaling.core.views import first_name, view_for

from .core_helpers import STAFF, T0, Session, therapist


def session() -> Session:
    s = Session.created()
    s.ok(STAFF, c.IssueInvite("c9", "Nia Absent", "client", "j9", T0))
    s.join("t1", "therapist", name="Dr Kim Park")
    s.join("c1", name="Ann Marie Lee")
    s.join("c2", name="Bob Stone")
    s.ok(therapist(), c.Admit("c1"))
    return s


def test_waiting_client_sees_nobody_and_no_title() -> None:
    view = view_for(session().state, "c2")
    assert view["you"]["status"] == "waiting"
    assert view["participants"] == [] and view["session"]["title"] == ""
    assert "waiting" not in view and "expected" not in view
    assert view["breakouts"]["open"] is False


def test_admitted_client_sees_first_names_only() -> None:
    view = view_for(session().state, "c1")
    assert {p["name"] for p in view["participants"]} == {"Ann", "Dr"}
    assert "waiting" not in view and "saved" not in view["breakouts"]
    assert view["session"]["title"] == "Tuesday group"


def test_therapist_sees_full_names_waiting_and_expected() -> None:
    view = view_for(session().state, "t1")
    assert {p["name"] for p in view["participants"]} == {"Ann Marie Lee", "Dr Kim Park"}
    assert [w["name"] for w in view["waiting"]] == ["Bob Stone"]
    assert view["expected"] == [{"id": "c9", "name": "Nia Absent", "role": "client"}]
    assert view["rev"] == session().state.seq


def test_first_name() -> None:
    assert first_name("Ann Marie Lee") == "Ann"
    assert first_name("  ") == ""
