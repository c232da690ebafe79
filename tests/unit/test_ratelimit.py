"""The per-connection token bucket, with time passed in."""

from signaling.core.ratelimit import TokenBucket


def test_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=3, rate=2)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(10.4) is False, "0.8 of a token is not enough"
    assert bucket.allow(10.5) is True
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False], "capped"
