"""Who receives what: same room only, grants enforced, only what was published."""

from __future__ import annotations

from server.media.routing import wanted_tracks
from signaling.ports import MediaGrant, MediaKind, MediaPlan

AV: frozenset[MediaKind] = frozenset({"audio", "video"})
AUDIO: frozenset[MediaKind] = frozenset({"audio"})


def _plan(*grants: MediaGrant) -> MediaPlan:
    return MediaPlan(session_id="s", grants={g.participant_id: g for g in grants})


def test_same_room_only_and_not_self() -> None:
    plan = _plan(
        MediaGrant("a", "r1", True, True),
        MediaGrant("b", "r1", True, True),
        MediaGrant("c", "r2", True, True),
    )
    published: dict[str, frozenset[MediaKind]] = {"a": AV, "b": AV, "c": AV}
    assert wanted_tracks(plan, "a", published) == {("b", "audio"), ("b", "video")}
    assert wanted_tracks(plan, "c", published) == frozenset()


def test_grants_and_publications_limit_kinds() -> None:
    plan = _plan(
        MediaGrant("a", "r", True, False),
        MediaGrant("b", "r", False, False),
        MediaGrant("c", "r", True, True),
    )
    published: dict[str, frozenset[MediaKind]] = {"a": AV, "b": AV, "c": AUDIO}
    assert wanted_tracks(plan, "b", published) == {("a", "audio"), ("c", "audio")}


def test_absent_participant_wants_nothing() -> None:
    plan = _plan(MediaGrant("a", "r", True, True))
    assert wanted_tracks(plan, "ghost", {"a": AV}) == frozenset()
