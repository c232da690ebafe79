"""Minutes of video and audio, and the modality rule (server/attendance/media.py).

Hand-built ledgers at fixed times for each rule, and properties over ledgers the core
itself wrote from random commands (mutes, drops, flow reports): the minutes of media never
exceed the minutes present, a no-show has none, and `modality` follows the threshold.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from server.attendance import project
from server.attendance.formats import row_to_json, to_csv
from server.attendance.rows import AttendanceRow
from server.attendance.service import Rules
from server.config import Settings
from server.exports import attendance_service
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import MuteKind

from .core_helpers import T0 as CORE_T0
from .core_helpers import Session
from .test_attendance_projection import admit, arrive, end, leave, m, media, only, session
from .test_core_properties import step


def flow(t: float, kind: MuteKind, flowing: bool, since: float | None = None,
         pid: str = "c1") -> e.MediaFlowChanged:
    return e.MediaFlowChanged(at=m(t), participant_id=pid, kind=kind, flowing=flowing,
                              since=m(t if since is None else since))


def seen(t: float, *kinds: MuteKind, pid: str = "c1") -> e.MediaPublished:
    """What the current relay reports on a first packet: it measures flows too."""
    return e.MediaPublished(at=m(t), participant_id=pid, kinds=frozenset(kinds), flows=True)


def mute(t: float, kind: MuteKind, muted: bool = True, by: str = "t1") -> e.MuteChanged:
    return e.MuteChanged(at=m(t), participant_id="c1", kind=kind, muted=muted, by=by)


def test_camera_off_from_the_first_minute_is_audio_only() -> None:
    row = only(session(arrive(0), admit(1), seen(1, "audio", "video"), mute(1, "video", by="c1"),
                       flow(1.5, "audio", True), end(61)))
    assert (row.minutes_present, row.minutes_audio, row.minutes_video) == (
        Decimal("60.00"), Decimal("59.50"), Decimal("0.00"))
    assert row.modality == "audio-only"


def test_video_for_half_the_time_present_is_audio_video() -> None:
    def row(video_minutes: float, **kw: object) -> AttendanceRow:
        return only(session(arrive(0), admit(0), seen(0, "audio", "video"),
                            flow(0, "audio", True), flow(0, "video", True),
                            flow(video_minutes + 0.5, "video", False, since=video_minutes),
                            end(60)), **kw)

    assert row(30).modality == "audio-video", "exactly half is enough"
    assert row(30).minutes_video == Decimal("30.00")
    assert row(29.99).modality == "audio-only"
    assert row(20, video_share=Decimal("0.25")).modality == "audio-video", "a clinic setting"
    assert row(59, video_share=Decimal("1")).modality == "audio-only"


def test_a_therapists_mute_ends_the_video_at_the_mute_not_at_the_relays_report() -> None:
    row = only(session(arrive(0), admit(0), flow(0, "audio", True), flow(0, "video", True),
                       mute(10, "video"), flow(10.05, "video", False, since=9.99),
                       mute(40, "video", muted=False), end(60)))
    assert row.minutes_video == Decimal("10.00"), "an unmute does not restart it by itself"
    assert row.minutes_audio == Decimal("60.00")
    assert row.modality == "audio-only"


def test_a_flow_counts_only_within_presence_and_open_ones_up_to_as_of() -> None:
    events = session(arrive(0), admit(0), flow(0, "audio", True), leave(10),
                     flow(10.1, "audio", False, since=9.9),
                     arrive(20), admit(25), flow(26, "audio", True))
    row = only(events, as_of=m(30))
    assert row.minutes_present == Decimal("15.00")
    assert row.minutes_audio == Decimal("14.00"), "0-10 (left at 10), then 26-30"


def test_a_no_show_has_no_minutes_of_media() -> None:
    row = only(session(arrive(0), leave(5)))
    assert row.status == "no_show"
    assert (row.minutes_video, row.minutes_audio, row.modality) == (
        Decimal("0.00"), Decimal("0.00"), "none")


def test_media_seen_but_never_flowing_is_none() -> None:
    """Muted from the first packet to the end: the relay saw it, but nothing was forwarded."""
    row = only(session(arrive(0), admit(0), mute(0, "audio"), mute(0, "video"),
                       seen(0.1, "audio", "video"), end(60)))
    assert (row.modality, row.minutes_audio, row.minutes_video) == (
        "none", Decimal("0.00"), Decimal("0.00"))


def test_records_from_before_flows_keep_the_old_rule_and_say_not_measured() -> None:
    row = only(session(arrive(0), admit(0), media(0, "audio", "video"), end(60)))
    assert row.modality == "audio-video", "what the record said when it was made"
    assert row.minutes_video is None and row.minutes_audio is None
    assert row_to_json(row)["minutes_video"] is None
    header, line = to_csv([row]).splitlines()
    cells = dict(zip(header.split(","), line.split(","), strict=True))
    assert (cells["minutes_video"], cells["minutes_audio"]) == ("", "")


def test_the_columns_are_appended_after_the_earlier_ones() -> None:
    row = only(session(arrive(0), admit(0), flow(0, "audio", True), end(30)))
    keys = list(row_to_json(row))
    video = keys.index("minutes_video")
    assert keys[video + 1] == "minutes_audio"
    assert video > keys.index("status") and video > keys.index("telehealth_consent"), (
        "appended: nothing before them renamed or moved")
    assert to_csv([row]).splitlines()[0].split(",") == keys
    assert row_to_json(row)["minutes_audio"] == 30.0


# -- properties over ledgers the core wrote -----------------------------------------------------

flow_step = st.builds(lambda p, k, f, a: ("system", c.ReportMediaFlow(p, k, f, a)),
                      st.sampled_from(["t1", "c1", "c2", "c3"]),
                      st.sampled_from(["audio", "video"]), st.booleans(), st.floats(0, 5))
pid = st.sampled_from(["t1", "c1", "c2", "c3"])
kind = st.sampled_from(["audio", "video"])
mutes = st.one_of(
    st.builds(lambda q, k, b: ("t1", c.Mute(q, k, b)), pid, kind, st.booleans()),
    st.builds(lambda q, k, b: (q, c.Mute(q, k, b)), pid, kind, st.booleans()),
)
comings_and_goings = st.one_of(
    st.builds(lambda q: (q, c.Disconnect(q)), pid),
    st.builds(lambda q: (q, c.Connect(q, f"N {q}", "therapist" if q == "t1" else "client",
                                      f"tok-{q}")), pid),
    st.builds(lambda q: (q, c.Leave()), pid),
    st.builds(lambda q: ("t1", c.Admit(q)), pid),
    st.just(("system", c.Tick())),
)
media_step = st.integers(0, 9).flatmap(
    lambda i: flow_step if i < 5 else mutes if i < 7 else comings_and_goings if i < 9 else step)
"""Mostly media: flow reports, mutes of both kinds, drops and returns; now and then any
command at all (breakouts, removals, the end)."""
program = st.lists(st.tuples(media_step, st.integers(min_value=0, max_value=300)),
                   max_size=40)
SLACK = Decimal("0.01")
"""Each value is rounded once to 0.01 on its own."""


def admitted_group() -> Session:
    """A therapist and two clients admitted, one client still waiting, one never came."""
    s = Session.created(grace_s=60)
    s.ok(c.Actor.staff("key1"), c.IssueInvite("c9", "Never Came", "client", "tok-c9",
                                              CORE_T0 + timedelta(days=1)))
    for pid in ("t1", "c1", "c2", "c3"):
        s.join(pid, "therapist" if pid == "t1" else "client")
    s.ok(_actor("t1"), c.Admit("c1"))
    s.ok(_actor("t1"), c.Admit("c2"))
    return s


def _actor(who: str) -> c.Actor:
    if who == "system":
        return c.SYSTEM
    return c.Actor.participant(who, "therapist" if who.startswith("t") else "client")


@settings(max_examples=300, deadline=None)
@given(program, st.integers(0, 3600), st.sampled_from(["0", "0.25", "0.5", "1"]), st.booleans())
def test_minutes_of_media_never_exceed_minutes_present(
    steps: list, later_s: int, share: str, ended: bool  # type: ignore[type-arg]
) -> None:
    s = admitted_group()
    for (who, command), gap_s in steps:
        s.now = s.now + timedelta(seconds=gap_s)
        s.do(_actor(who), command)
    if ended:
        s.do(_actor("t1"), c.End())
    video_share = Decimal(share)
    rows = project(s.events, s.now + timedelta(seconds=later_s), video_share=video_share)
    assert any(r.participant_id == "c9" for r in rows)
    for r in rows:
        assert r.minutes_video is not None and r.minutes_audio is not None
        assert Decimal(0) <= r.minutes_video <= r.minutes_present, r
        assert Decimal(0) <= r.minutes_audio <= r.minutes_present, r
        if r.status == "no_show":
            assert (r.minutes_video, r.minutes_audio, r.modality) == (0, 0, "none")
        threshold = video_share * r.minutes_present
        if r.modality == "audio-video":
            assert r.minutes_video >= threshold - SLACK and r.minutes_present > 0
        elif r.minutes_video > threshold + SLACK and r.minutes_video > 0:
            raise AssertionError(f"video flowed past the threshold, yet {r.modality}: {r}")
        if r.modality == "none":
            assert r.minutes_audio == 0


def test_the_share_is_the_clinics_setting_and_part_of_the_cache_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.model_validate({}).video_modality_share == 0.5
    monkeypatch.setenv("CIRCLE_VIDEO_MODALITY_SHARE", "0.25")
    clinic = Settings.model_validate({})
    db = SimpleNamespace(sessions=SimpleNamespace(sessions_between=None), attendance_rows=None)
    service = attendance_service(clinic, db, SimpleNamespace(load=None), None)  # type: ignore[arg-type]
    assert service.rules.video_share == Decimal("0.25")
    assert service.rules.key != Rules().key, "rows made under another share are not reused"
    records = [e.to_record(ev) for ev in session(
        arrive(0), admit(0), flow(0, "audio", True), flow(0, "video", True),
        flow(20, "video", False), end(60))]
    (row,) = service.rules.project(records, as_of=m(120))
    assert row.modality == "audio-video", "20 of 60 minutes: enough at a quarter"
    (default,) = Rules().project(records, as_of=m(120))
    assert default.modality == "audio-only"
    monkeypatch.setenv("CIRCLE_VIDEO_MODALITY_SHARE", "1.5")
    with pytest.raises(ValidationError):
        Settings.model_validate({})
