"""Self mute, who holds a mute, and which flow reports count (signaling/core/mutes.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.media_plan import may_send, plan_for
from signaling.core.session import replay
from signaling.core.views import view_for

from .core_helpers import Session, client, therapist
from .test_core_properties import _run, step


def group() -> Session:
    s = Session.created()
    s.join("t1", "therapist")
    s.join("c1")
    s.join("c2")
    s.ok(therapist(), c.AdmitAll())
    return s


def muted(s: Session, pid: str) -> tuple[bool, bool]:
    p = s.state.participants[pid]
    return p.muted_audio, p.muted_video


def test_a_client_mutes_and_unmutes_itself_and_the_relay_is_told() -> None:
    s = group()
    (event,) = s.ok(client("c1"), c.Mute("c1", "video", True))
    assert event == e.MuteChanged(at=s.now, participant_id="c1", kind="video", muted=True,
                                  by="c1")
    assert muted(s, "c1") == (False, True)
    grant = plan_for(s.state).grants["c1"]
    assert (grant.send_audio, grant.send_video) == (True, False), "the relay drops it"
    s.ok(client("c1"), c.Mute("c1", "video", False))
    assert muted(s, "c1") == (False, False)
    assert plan_for(s.state).grants["c1"].send_video is True
    assert s.ok(client("c1"), c.Mute("c1", "video", False)) == (), "no change, no event"


def test_peers_see_a_self_mute_in_the_views() -> None:
    s = group()
    s.ok(client("c1"), c.Mute("c1", "audio", True))
    peer = next(p for p in view_for(s.state, "c2")["participants"]
                if p["handle"] == s.state.participants["c1"].handle)
    assert peer["muted"] == {"audio": True, "video": False}
    assert "muted_by_therapist" not in peer, "clients see the mute, not who holds it"
    mine = view_for(s.state, "c1")["you"]
    assert mine["muted_self"] == {"audio": True, "video": False}
    assert mine["muted_by_therapist"] == {"audio": False, "video": False}
    at_therapist = next(p for p in view_for(s.state, "t1")["participants"] if p["id"] == "c1")
    assert at_therapist["muted"]["audio"] and not at_therapist["muted_by_therapist"]["audio"]


@pytest.mark.parametrize("command", [c.Mute("c2", "audio", True), c.Mute("t1", "video", True),
                                     c.Mute("c2", "audio", False)])
def test_a_client_cannot_mute_or_unmute_anyone_else(command: c.Mute) -> None:
    s = group()
    s.ok(therapist(), c.Mute("c2", "audio", True))
    refused = s.refused(client("c1"), command)
    assert (refused.code, refused.message) == ("forbidden", "therapists only")


def test_a_client_cannot_lift_the_therapists_mute() -> None:
    s = group()
    s.ok(therapist(), c.Mute("c1", "audio", True))
    refused = s.refused(client("c1"), c.Mute("c1", "audio", False))
    assert (refused.code, refused.message) == ("forbidden", "the therapist muted you")
    assert view_for(s.state, "c1")["you"]["muted_by_therapist"]["audio"] is True
    s.ok(client("c1"), c.Mute("c1", "video", True))  # the other kind is still its own
    s.ok(therapist(), c.Mute("c1", "audio", False))
    s.ok(client("c1"), c.Mute("c1", "audio", True))
    s.ok(client("c1"), c.Mute("c1", "audio", False))
    assert muted(s, "c1") == (False, True)


def test_a_therapists_mute_over_a_self_mute_makes_it_the_therapists() -> None:
    s = group()
    s.ok(client("c1"), c.Mute("c1", "audio", True))
    (event,) = s.ok(therapist(), c.Mute("c1", "audio", True))
    assert event.by == "t1", "recorded although already muted: the therapist holds it now"
    refused = s.refused(client("c1"), c.Mute("c1", "audio", False))
    assert refused.message == "the therapist muted you"
    # The therapist lifts theirs: the client's own mute still holds (nobody's microphone is
    # switched on from afar), and only the client lifts it.
    s.ok(therapist(), c.Mute("c1", "audio", False))
    assert muted(s, "c1") == (True, False)
    s.ok(client("c1"), c.Mute("c1", "audio", False))
    assert muted(s, "c1") == (False, False)


def test_a_therapist_cannot_switch_on_a_client_s_own_mute() -> None:
    s = group()
    s.ok(client("c1"), c.Mute("c1", "video", True))
    refused = s.refused(therapist(), c.Mute("c1", "video", False))
    assert refused.code == "conflict"
    assert muted(s, "c1") == (False, True)


def test_therapists_still_mute_anyone_and_lift_their_own_mutes() -> None:
    s = group()
    s.join("t2", "therapist")
    for target in ("c1", "c2", "t2"):
        s.ok(therapist(), c.Mute(target, "audio", True))
        assert muted(s, target) == (True, False)
    # A clinician muted by another lifts it, and mutes and unmutes themself.
    s.ok(therapist("t2"), c.Mute("t2", "audio", False))
    assert muted(s, "t2") == (False, False)
    s.ok(therapist(), c.Mute("t1", "video", True))
    s.ok(therapist(), c.Mute("t1", "video", False))
    assert muted(s, "t1") == (False, False)


def test_a_co_therapists_mute_holds_like_a_therapists() -> None:
    s = group()
    s.join("t2", "co_therapist")
    s.ok(c.Actor.participant("t2", "co_therapist"), c.Mute("c1", "audio", True))
    assert s.refused(client("c1"), c.Mute("c1", "audio", False)).code == "forbidden"


def test_a_waiting_client_cannot_mute_itself() -> None:
    s = Session.created()
    s.join("c1")
    assert s.refused(client("c1"), c.Mute("c1", "audio", True)).code == "forbidden"


def test_replay_rebuilds_who_holds_each_mute() -> None:
    s = group()
    s.ok(client("c1"), c.Mute("c1", "audio", True))
    s.ok(therapist(), c.Mute("c1", "audio", True))
    s.ok(therapist(), c.Mute("c2", "video", True))
    s.ok(client("c2"), c.Mute("c2", "audio", True))
    assert replay(s.events) == s.state


def test_a_mute_recorded_before_self_mutes_is_a_therapists() -> None:
    """Old ledgers: every MuteChanged was a therapist's, and still holds like one."""
    s = group()
    s.ok(therapist(), c.Mute("c1", "audio", True))
    p = replay(s.events).participants["c1"]
    assert p.muted_by_clinician == {"audio"} and p.muted_self == frozenset()


# -- media flow -------------------------------------------------------------------------------


def flow(pid: str, kind: str, flowing: bool, ago_s: float = 0.0) -> c.ReportMediaFlow:
    return c.ReportMediaFlow(pid, kind, flowing, ago_s)  # type: ignore[arg-type]


def test_only_changes_of_flow_are_recorded_dated_by_the_relay() -> None:
    s = group()
    (start,) = s.ok(c.SYSTEM, flow("c1", "audio", True))
    assert isinstance(start, e.MediaFlowChanged) and start.since == s.now
    assert s.ok(c.SYSTEM, flow("c1", "audio", True)) == (), "a repeat changes nothing"
    s.at(3)
    (stop,) = s.ok(c.SYSTEM, flow("c1", "audio", False, ago_s=1.5))
    assert isinstance(stop, e.MediaFlowChanged) and not stop.flowing
    assert stop.since == s.now - timedelta(seconds=1.5), "the last sample that saw packets"
    assert s.ok(c.SYSTEM, flow("c1", "audio", False)) == ()
    assert s.state.participants["c1"].flowing == frozenset()


def test_a_start_that_crossed_a_mute_counts_nothing() -> None:
    s = group()
    s.ok(client("c1"), c.Mute("c1", "video", True))
    assert s.ok(c.SYSTEM, flow("c1", "video", True)) == (), "those packets were dropped"
    s.ok(c.SYSTEM, flow("c1", "audio", True))
    assert s.state.participants["c1"].flowing == {"audio"}


def test_a_mute_a_drop_or_leaving_ends_a_flow_at_once() -> None:
    s = group()
    for pid in ("c1", "c2", "t1"):
        s.ok(c.SYSTEM, flow(pid, "audio", True))
        s.ok(c.SYSTEM, flow(pid, "video", True))
    s.ok(therapist(), c.Mute("c1", "video", True))
    assert s.state.participants["c1"].flowing == {"audio"}
    s.ok(c.Actor.participant("c2", "client"), c.Disconnect("c2"))
    assert s.state.participants["c2"].flowing == frozenset()
    assert s.ok(c.SYSTEM, flow("c2", "audio", False)) == (), "the relay's late stop is moot"
    s.ok(therapist(), c.End())
    assert all(not p.flowing for p in s.state.participants.values())
    assert s.ok(c.SYSTEM, flow("t1", "audio", True)) == (), "nothing after the end"


def test_flow_reports_are_the_servers_alone() -> None:
    s = group()
    assert s.refused(client("c1"), flow("c1", "audio", True)).code == "forbidden"
    assert s.refused(therapist(), flow("c1", "audio", True)).code == "forbidden"
    assert s.refused(c.SYSTEM, flow("ghost", "audio", True)).code == "not_found"


def test_media_published_says_whether_the_relay_measures_flows() -> None:
    s = group()
    (seen,) = s.ok(c.SYSTEM, c.ReportMedia("c1", frozenset({"audio"}), flows=True))
    assert isinstance(seen, e.MediaPublished) and seen.flows
    (old,) = s.ok(c.SYSTEM, c.ReportMedia("c2", frozenset({"audio"})))
    assert isinstance(old, e.MediaPublished) and not old.flows


flow_step = st.builds(lambda p, k, f, a: ("system", flow(p, k, f, a)),
                      st.sampled_from(["t1", "c1", "c2", "c3"]),
                      st.sampled_from(["audio", "video"]), st.booleans(),
                      st.floats(0, 5))
program = st.lists(st.tuples(st.one_of(step, flow_step, flow_step),
                             st.integers(min_value=0, max_value=200)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(program)
def test_a_flow_exists_only_while_the_grant_allows_it(steps: list) -> None:  # type: ignore[type-arg]
    s = _run(steps)
    for p in s.state.participants.values():
        assert all(may_send(p, kind) for kind in p.flowing), p
    assert replay(s.events) == s.state
