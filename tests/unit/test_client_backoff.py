"""The Python client's reconnection rules (client/reconnect.py), exactly, with seeded randoms."""

from __future__ import annotations

import base64
import json
import random
from itertools import islice

import pytest

from client.__main__ import _parse
from client.reconnect import (
    Backoff,
    is_transient_refusal,
    merge_nodes,
    parse_nodes,
    reconnect_schedule,
    session_of,
    takes_turns,
    with_session,
)


def test_delays_stay_within_a_ceiling_that_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.25, cap_s=5.0)
    ceilings = [backoff.ceiling_s(n) for n in range(8)]
    assert ceilings == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    rng = random.Random(7)
    for _ in range(200):
        attempts = list(islice(reconnect_schedule(3, 0, rng, backoff), 8))
        for n, attempt in enumerate(attempts):
            assert 0.0 <= attempt.delay_s <= ceilings[n]
    assert backoff.ceiling_s(10_000) == 5.0, "no overflow however long the outage"


def test_full_jitter_spreads_delays_over_the_whole_range_and_they_grow() -> None:
    rng = random.Random(11)
    runs = [list(islice(reconnect_schedule(1, 0, rng), 6)) for _ in range(2000)]
    for n in range(6):
        delays = [run[n].delay_s for run in runs]
        ceiling = Backoff().ceiling_s(n)
        # Uniform on [0, ceiling]: the mean is half the ceiling, both ends are reached.
        assert sum(delays) / len(delays) == pytest.approx(ceiling / 2, rel=0.08)
        assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling
    means = [sum(run[n].delay_s for run in runs) / len(runs) for n in range(6)]
    assert means == sorted(means)


def test_the_schedule_is_determined_by_the_seed() -> None:
    def first(seed: int) -> list[float]:
        return [a.delay_s for a in islice(reconnect_schedule(2, 0, random.Random(seed)), 5)]

    assert first(3) == first(3)
    assert first(3) != first(4)


def test_rotation_starts_at_the_next_node_and_tries_the_lost_one_last() -> None:
    nodes = [a.node for a in islice(reconnect_schedule(3, 1, random.Random(0)), 7)]
    assert nodes == [2, 0, 1, 2, 0, 1, 2]
    assert [a.node for a in islice(reconnect_schedule(3, -1, random.Random(0)), 3)] == [0, 1, 2]
    one = [a.node for a in islice(reconnect_schedule(1, 0, random.Random(0)), 4)]
    assert one == [0, 0, 0, 0], "one load-balanced URL: every attempt goes to it"
    with pytest.raises(ValueError):
        next(reconnect_schedule(0, 0, random.Random(0)))


def test_node_lists_from_repeated_and_comma_separated_arguments() -> None:
    assert parse_nodes(["http://a:1, http://b:2/", "https://c", "http://a:1"]) == (
        "http://a:1", "http://b:2", "https://c")
    for bad in (["ftp://a"], ["a:8080"], [" , "]):
        with pytest.raises(ValueError):
            parse_nodes(bad)
    assert _parse(["--token", "t"]).nodes == ("http://127.0.0.1:8080",)
    assert _parse(["--token", "t", "--url", "http://x:1"]).nodes == ("http://x:1",)
    assert _parse(["--token", "t", "--server", "http://x:1,http://y:2",
                   "--server", "http://z:3"]).nodes == ("http://x:1", "http://y:2", "http://z:3")


def test_the_servers_node_list_extends_the_given_one() -> None:
    given = ("https://lb.example",)
    offered = ["http://10.0.1.11:8080", "https://lb.example", "not a url", 7,
               "http://10.0.1.11:8080/"]
    assert merge_nodes(given, offered) == ("https://lb.example", "http://10.0.1.11:8080")
    assert merge_nodes(given, None) == given
    assert merge_nodes(given, "http://10.0.1.11:8080") == given


def _jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFZERTQSJ9.{body}.c2ln"


def test_the_session_id_is_read_from_the_token_for_routing() -> None:
    assert session_of(_jwt({"sid": "s_42", "sub": "c1"})) == "s_42"
    for token in ("not-a-token", _jwt({"sub": "c1"}), _jwt(["sid"]), "a.%%%.c", _jwt({"sid": 4})):
        assert session_of(token) is None
    assert with_session("http://a:1", "s_42") == "http://a:1?session=s_42"
    assert with_session("http://a:1/?x=1", "s 4") == "http://a:1/?x=1&session=s+4"
    assert with_session("http://a:1", None) == "http://a:1"


def test_only_a_second_quick_unannounced_server_disconnect_means_taking_turns() -> None:
    assert not takes_turns(opened_after_unannounced=False, uptime_s=0.1)
    assert takes_turns(opened_after_unannounced=True, uptime_s=0.1)
    assert not takes_turns(opened_after_unannounced=True, uptime_s=60.0)


def test_only_unreachable_nodes_and_passing_conflicts_are_retried() -> None:
    assert is_transient_refusal("unreachable", "Connection refused")
    assert is_transient_refusal("conflict", "session is restarting, try again")
    assert not is_transient_refusal("conflict", "the session is locked")
    assert not is_transient_refusal("forbidden", "this join link has expired; try again")
    assert not is_transient_refusal("forbidden", "you were removed from this session")
