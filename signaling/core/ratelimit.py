"""A token bucket per connection: python-socketio has no rate limit of its own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """Allows bursts of `capacity` events, refilled at `rate` per second.

    Time is passed in (monotonic seconds) so the rule is tested without clocks.
    """

    capacity: float
    rate: float
    tokens: float = -1.0
    stamp: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
