"""Sequence/timestamp rewriting keeps each subscriber's stream continuous."""

from __future__ import annotations

from server.media.rewrite import SEQ_MOD, StreamRewriter


def test_offsets_are_fixed_within_a_run_and_unmap() -> None:
    r = StreamRewriter(90000)
    s0, t0 = r.map(100, 5000, 0.0) or (0, 0)
    s1, t1 = r.map(101, 8000, 0.033) or (0, 0)
    assert (s1 - s0) % SEQ_MOD == 1 and t1 - t0 == 3000
    assert r.unmap(s1) == 101 and r.unmap(s0) == 100
    assert r.unmap((s1 + 1) % SEQ_MOD) is None  # not sent yet


def test_resume_after_pause_continues_without_a_gap() -> None:
    r = StreamRewriter(48000)
    last = r.map(65535, 1000, 0.0)
    assert last is not None
    r.pause()
    resumed = r.map(30000, 99999, 0.5)
    assert resumed is not None
    assert resumed[0] == (last[0] + 1) % SEQ_MOD
    assert resumed[1] - last[1] == 24000  # half a second at 48 kHz
    assert r.unmap(last[0]) is None  # previous run is not mapped back


def test_packets_older_than_the_run_are_dropped() -> None:
    r = StreamRewriter(90000)
    assert r.map(10, 0, 0.0) is not None
    assert r.map(9, 0, 0.0) is None
    assert r.map(11, 0, 0.0) is not None


def test_sequence_wraps() -> None:
    r = StreamRewriter(90000)
    a = r.map(65535, 0, 0.0)
    b = r.map(0, 0, 0.0)
    assert a is not None and b is not None
    assert (b[0] - a[0]) % SEQ_MOD == 1
