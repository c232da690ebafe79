"""Which forwarded tracks each participant should receive: a pure function of the plan.

Kept free of I/O so the room-isolation and mute rules can be tested without a network.
"""

from __future__ import annotations

from collections.abc import Mapping

from signaling.ports import MediaGrant, MediaPlan, TrackKind

TrackKey = tuple[str, TrackKind]
"""A published track: (publisher's participant id, kind). One track per kind per publisher:
audio, the camera's video, and a screen share (a second video section, `screen`)."""


def grant_allows(grant: MediaGrant, kind: TrackKind) -> bool:
    if kind == "audio":
        return grant.send_audio
    return grant.send_video if kind == "video" else grant.send_screen


def wanted_tracks(
    plan: MediaPlan, subscriber: str, published: Mapping[str, frozenset[TrackKind]]
) -> frozenset[TrackKey]:
    """The tracks `subscriber` should receive now.

    Only publishers in the subscriber's room (`MediaPlan.sources_for`), only kinds their
    grant allows, and only kinds they have actually offered to publish.
    """
    return frozenset(
        (grant.participant_id, kind)
        for grant in plan.sources_for(subscriber)
        for kind in sorted(published.get(grant.participant_id, frozenset()))
        if grant_allows(grant, kind)
    )
