"""Keyframe requests: one per interval while unanswered, soon again once a keyframe passed."""

from __future__ import annotations

from server.media.rtcp import KeyframeThrottle


def test_an_unanswered_request_is_repeated_once_per_interval() -> None:
    throttle = KeyframeThrottle(interval_s=0.3, answered_interval_s=0.05)
    assert throttle.allow(10.0) and throttle.awaiting
    assert not throttle.allow(10.1) and not throttle.allow(10.29)
    assert throttle.allow(10.3)


def test_a_keyframe_after_the_request_lets_the_next_one_go_soon() -> None:
    throttle = KeyframeThrottle(interval_s=0.3, answered_interval_s=0.05)
    assert throttle.allow(10.0)
    throttle.keyframe_seen(10.02)
    assert not throttle.awaiting
    assert not throttle.allow(10.04), "not sooner than the answered interval"
    assert throttle.allow(10.06), "a subscriber that started after that keyframe asks at once"
    assert throttle.awaiting and not throttle.allow(10.2), "and is unanswered again"


def test_a_keyframe_before_any_request_answers_nothing() -> None:
    throttle = KeyframeThrottle(interval_s=0.3, answered_interval_s=0.05)
    throttle.keyframe_seen(9.0)
    assert not throttle.awaiting and throttle.allow(9.01)
    throttle.keyframe_seen(9.0)  # older than the request: not its answer
    assert not throttle.allow(9.1)
