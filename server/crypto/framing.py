"""Unambiguous byte framing for everything Circle MACs, signs or binds as associated data.

Concatenating variable-length fields is ambiguous ("ab" + "c" == "a" + "bc"), which would let
a record be re-labelled without changing its MAC. Every field is length-prefixed instead.
"""

from __future__ import annotations


def encode_seq(seq: int) -> bytes:
    """A sequence number as 8 big-endian bytes (seqs are non-negative, below 2**63)."""
    return seq.to_bytes(8, "big", signed=True)


def frame(*parts: bytes) -> bytes:
    """Each part preceded by its 4-byte big-endian length."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)
