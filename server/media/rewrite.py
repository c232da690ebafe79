"""Per-subscriber rewriting of sequence numbers and timestamps.

A subscriber sees one continuous stream per forwarded track even when forwarding pauses
(mute, keyframe wait) and resumes: after a pause the next packet continues the sequence
(no gap to NACK) and the timestamp advances by the wall-clock time that passed.
Within one forwarding run the mapping is a fixed offset, so a retransmitted packet maps
to the same outgoing number as the original and NACKs can be mapped back.
"""

from __future__ import annotations

import random

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class StreamRewriter:
    """Maps a publisher's (seq, timestamp) to a subscriber's."""

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_out_seq = random.randrange(SEQ_MOD // 2)
        self._last_out_ts = random.randrange(TS_MOD)
        self._last_sent_at: float | None = None
        self._run_start_out_seq: int | None = None
        self._run_start_in_seq = 0
        self._highest_in_seq = 0

    def pause(self) -> None:
        """Forwarding stops; the next packet starts a new run."""
        self._run_start_out_seq = None

    @property
    def running(self) -> bool:
        return self._run_start_out_seq is not None

    def map(self, seq: int, timestamp: int, now: float) -> tuple[int, int] | None:
        """The outgoing (seq, timestamp) for a packet forwarded at `now` (seconds).

        None for a packet older than the current run (it would reuse an old number).
        """
        if self._run_start_out_seq is None:
            elapsed = 0.0 if self._last_sent_at is None else now - self._last_sent_at
            ticks = max(1, int(elapsed * self._clock_rate))
            out_seq = (self._last_out_seq + 1) % SEQ_MOD
            out_ts = (self._last_out_ts + ticks) % TS_MOD
            self._seq_offset = (out_seq - seq) % SEQ_MOD
            self._ts_offset = (out_ts - timestamp) % TS_MOD
            self._run_start_out_seq = out_seq
            self._run_start_in_seq = seq
            self._highest_in_seq = seq
        elif _seq_newer(self._run_start_in_seq, seq):
            return None
        out_seq = (seq + self._seq_offset) % SEQ_MOD
        out_ts = (timestamp + self._ts_offset) % TS_MOD
        if _seq_newer(seq, self._highest_in_seq) or out_seq == self._run_start_out_seq:
            self._highest_in_seq = seq
            self._last_out_seq = out_seq
            self._last_out_ts = out_ts
            self._last_sent_at = now
        return out_seq, out_ts

    def unmap(self, out_seq: int) -> int | None:
        """The publisher's sequence number for `out_seq`, if it was sent in this run."""
        start = self._run_start_out_seq
        if start is None:
            return None
        if (out_seq - start) % SEQ_MOD > (self._last_out_seq - start) % SEQ_MOD:
            return None
        return (out_seq - self._seq_offset) % SEQ_MOD


def _seq_newer(a: int, b: int) -> bool:
    """Whether sequence number `a` comes after `b`, modulo wrap-around."""
    return a != b and (a - b) % SEQ_MOD < SEQ_MOD // 2
