"""The relay's flow sampler (server/media/flow.py): transitions from counters, clock injected."""

from __future__ import annotations

from dataclasses import dataclass

from server.media.flow import FlowChange, FlowSampler

KEY = ("c1", "video")


@dataclass(eq=False)
class Source:
    """An ingress as the sampler sees it: a count of allowed packets that only grows."""

    count: int = 0


def sampler() -> FlowSampler[tuple[str, str], Source]:
    return FlowSampler(lambda s: s.count)


def test_a_start_is_the_first_sample_that_saw_packets_a_stop_the_last() -> None:
    flows, src = sampler(), Source()
    assert flows.sample(KEY, src, now=0.0) is None, "nothing arrived: nothing to say"
    src.count = 40
    assert flows.sample(KEY, src, now=2.0) == FlowChange(KEY, True, 2.0)
    src.count = 90
    assert flows.sample(KEY, src, now=4.0) is None, "still flowing: no report"
    src.count = 95
    assert flows.sample(KEY, src, now=6.0) is None
    assert flows.sample(KEY, src, now=8.0) == FlowChange(KEY, False, 6.0), (
        "stopped between 6 and 8: dated at the last sample that saw packets")
    assert flows.sample(KEY, src, now=10.0) is None
    src.count = 96
    assert flows.sample(KEY, src, now=12.0) == FlowChange(KEY, True, 12.0)


def test_a_forced_stop_counts_packets_since_the_last_sample_up_to_now() -> None:
    flows, src = sampler(), Source()
    src.count = 10
    flows.sample(KEY, src, now=2.0)
    src.count = 20  # more arrived, then the grant stopped allowing the kind
    assert flows.stop(KEY, now=3.1) == FlowChange(KEY, False, 3.1)
    assert flows.stop(KEY, now=3.2) is None
    assert flows.sample(KEY, src, now=4.0) is None, "nothing new after the mute"


def test_a_forced_stop_without_new_packets_is_dated_at_the_last_sample_that_saw_some() -> None:
    flows, src = sampler(), Source()
    src.count = 10
    flows.sample(KEY, src, now=2.0)
    assert flows.stop(KEY, now=3.5) == FlowChange(KEY, False, 2.0)


def test_a_flow_that_started_and_was_muted_between_two_samples_is_never_reported() -> None:
    flows, src = sampler(), Source()
    flows.sample(KEY, src, now=0.0)
    src.count = 3
    assert flows.stop(KEY, now=0.5) is None
    assert flows.sample(KEY, src, now=2.0) is None


def test_a_replaced_or_closed_source_ends_its_flow_at_once() -> None:
    flows, old = sampler(), Source()
    old.count = 50
    flows.sample(KEY, old, now=2.0)
    new = Source()  # a new connection's ingress counts from 0
    assert flows.keep({KEY: new}, now=3.0) == [FlowChange(KEY, False, 2.0)]
    assert flows.sample(KEY, new, now=4.0) is None
    new.count = 5
    assert flows.sample(KEY, new, now=6.0) == FlowChange(KEY, True, 6.0)
    assert flows.keep({}, now=7.0) == [FlowChange(KEY, False, 6.0)]
    assert not flows.flowing(KEY) and flows.reassert(now=8.0) == []


def test_reassert_repeats_each_tracks_state() -> None:
    flows, a, b = sampler(), Source(), Source()
    other = ("c2", "audio")
    a.count = 1
    flows.sample(KEY, a, now=2.0)
    flows.sample(other, b, now=2.0)
    assert sorted(flows.reassert(now=30.0), key=str) == sorted(
        [FlowChange(KEY, True, 30.0), FlowChange(other, False, 30.0)], key=str)
