"""Checkpoint files and the comparison `circle verify` makes with them.

The file: signed over everything it says (any edit, another key ring, a different counter
fail), written atomically and owner-only. The comparison: each mark still in the database on
the same chain, or a finding that names the stream, what was seen and every file that saw it.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.checkpoints.compare import (
    DELETED,
    FORKED,
    MOVED_BACK,
    ROLLED_BACK,
    Finding,
    Source,
    compare,
)
from server.checkpoints.document import (
    Checkpoint,
    CheckpointInvalid,
    Mark,
    decode,
    encode,
    read_checkpoint,
    write_atomic,
)
from server.crypto.keyring import KeyRing
from server.ledger import BadRecord, StreamState, VerifyReport

MAC = {n: bytes([n]) * 32 for n in range(1, 10)}
AT = datetime(2024, 5, 1, 17, 0, tzinfo=UTC)


def _checkpoint(counter: int = 7, lineage: str = "l1", **streams: Mark) -> Checkpoint:
    return Checkpoint(lineage, "node-a", counter, AT, AT,
                      streams or {"s_a": Mark(3, MAC[3]), "audit": Mark(2, MAC[2])})


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "keys" / "keys.json")


# -- the signed file ----------------------------------------------------------------------


def test_a_checkpoint_reads_back_as_written(ring: KeyRing, tmp_path: Path) -> None:
    checkpoint = _checkpoint(s_a=Mark(3, MAC[3]), s_b=Mark(1, MAC[1], moved_back_to=0))
    raw = encode(checkpoint, ring.ledger_signing_key)
    assert decode(raw, ring.ledger_public_key, tmp_path / "c.json") == checkpoint


def _edited(raw: bytes, edit: Any) -> bytes:
    doc = json.loads(raw)
    edit(doc)
    return json.dumps(doc).encode()


EDITS = {
    "seq lowered": lambda d: d["streams"]["s_a"].update(seq=2),
    "mac swapped": lambda d: d["streams"]["s_a"].update(mac=d["streams"]["audit"]["mac"]),
    "stream dropped": lambda d: d["streams"].pop("s_a"),
    "stream added": lambda d: d["streams"].update(s_x=dict(d["streams"]["s_a"])),
    "counter raised": lambda d: d.update(counter=d["counter"] + 1),
    "moved-back flag removed": lambda d: d["streams"]["audit"].pop("moved_back_to"),
    "lineage changed": lambda d: d.update(lineage="other"),
    "signature zeroed": lambda d: d.update(signature="A" * 86 + "=="),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=list(EDITS))
def test_any_edit_breaks_the_signature(ring: KeyRing, tmp_path: Path, edit: Any) -> None:
    raw = encode(_checkpoint(s_a=Mark(3, MAC[3]), audit=Mark(2, MAC[2], moved_back_to=1)),
                 ring.ledger_signing_key)
    with pytest.raises(CheckpointInvalid, match="signature does not verify"):
        decode(_edited(raw, edit), ring.ledger_public_key, tmp_path / "c.json")


def test_another_key_ring_cannot_sign_a_checkpoint(ring: KeyRing, tmp_path: Path) -> None:
    forger = KeyRing.load_or_create(tmp_path / "forger" / "keys.json")
    raw = encode(_checkpoint(), forger.ledger_signing_key)
    with pytest.raises(CheckpointInvalid, match="signature does not verify") as bad:
        decode(raw, ring.ledger_public_key, tmp_path / "c.json")
    assert bad.value.path == tmp_path / "c.json"


def test_a_head_signature_is_no_checkpoint_signature(ring: KeyRing, tmp_path: Path) -> None:
    """The label keeps the two kinds of signed message apart."""
    raw = json.loads(encode(_checkpoint(), ring.ledger_signing_key))
    unlabelled = {k: v for k, v in raw.items() if k != "signature"}
    body = json.dumps(unlabelled, sort_keys=True, separators=(",", ":")).encode()
    raw["signature"] = base64.b64encode(ring.ledger_signing_key.sign(body)).decode()
    with pytest.raises(CheckpointInvalid, match="signature"):
        decode(json.dumps(raw).encode(), ring.ledger_public_key, tmp_path / "c.json")


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]", b'{"streams": {}}'])
def test_garbage_is_no_checkpoint(ring: KeyRing, tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(CheckpointInvalid):
        decode(raw, ring.ledger_public_key, tmp_path / "c.json")


def test_a_missing_file_reads_as_none(ring: KeyRing, tmp_path: Path) -> None:
    assert read_checkpoint(tmp_path / "nothing.json", ring.ledger_public_key) is None


def test_written_owner_only_atomically_and_without_leftovers(
    ring: KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "new" / "checkpoints.json"
    write_atomic(path, b"first")
    path.chmod(0o644)  # a looser old file is replaced by an owner-only one
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["checkpoints.json"]


def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints.json"
    write_atomic(path, b"old")

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.json"]


# -- the comparison -----------------------------------------------------------------------


def _report(problems: list[BadRecord] | None = None, **intact: StreamState) -> VerifyReport:
    return VerifyReport(len(intact) + len(problems or []), 0, problems or [], dict(intact))


def _state(head: int, *marks: int) -> StreamState:
    """A stream at `head` whose chain MAC at each of `marks` is the one the tests mark."""
    return StreamState(head, {n: MAC[n] for n in marks})


def _source(name: str, checkpoint: Checkpoint) -> Source:
    return Source(Path(name), checkpoint)


def test_a_database_that_only_grew_agrees() -> None:
    source = _source("c.json", _checkpoint())
    assert compare([source], _report(s_a=_state(5, 3), audit=_state(2, 2))) == []


CASES = {
    "deleted": (None, DELETED, "the checkpoint saw it at seq 3; the database has neither"),
    "rolled back": (_state(2, 2), ROLLED_BACK, "rolled back (db at seq 2, checkpoint saw 3)"),
    "forked at the head": (StreamState(3, {3: MAC[9]}), FORKED, "head at seq 3 is not the one"),
    "forked below": (StreamState(6, {3: MAC[9]}), FORKED, "forked at seq 3: the database's "
                     "record there is not the one the checkpoint saw (db now at seq 6"),
    "record gone below": (StreamState(6, {}), FORKED, "forked at seq 3"),
}


@pytest.mark.parametrize(("state", "kind", "detail"), CASES.values(), ids=list(CASES))
def test_each_disagreement_is_named(state: StreamState | None, kind: str, detail: str) -> None:
    intact = {"audit": _state(2, 2)} | ({} if state is None else {"s_a": state})
    findings = compare([_source("c.json", _checkpoint())], VerifyReport(len(intact), 0, [], intact))
    assert [(f.kind, f.stream, f.files) for f in findings] == [(kind, "s_a", (Path("c.json"),))]
    assert detail in findings[0].detail


def test_a_stream_the_chain_checks_found_bad_is_left_to_them() -> None:
    problem = BadRecord("s_a", 2, "chain MAC mismatch")
    assert compare([_source("c.json", _checkpoint())],
                   _report([problem], audit=_state(2, 2))) == []


def test_a_mark_the_server_saw_moved_back_is_reported_even_when_it_agrees() -> None:
    checkpoint = _checkpoint(s_a=Mark(3, MAC[3], moved_back_to=1), s_b=Mark(1, MAC[1],
                                                                            moved_back_to=0))
    findings = compare([_source("c.json", checkpoint)],
                       _report(s_a=_state(3, 3), s_b=_state(1, 1)))
    assert [(f.kind, f.stream) for f in findings] == [(MOVED_BACK, "s_a"), (MOVED_BACK, "s_b")]
    assert "found the database at seq 1, below seq 3" in findings[0].detail
    assert "found the stream gone" in findings[1].detail


def test_a_file_and_its_copy_give_one_finding_naming_both() -> None:
    checkpoint = _checkpoint()
    findings = compare([_source("a.json", checkpoint), _source("copy.json", checkpoint)],
                       _report(audit=_state(2, 2)))
    assert findings == [Finding(DELETED, "s_a", findings[0].detail,
                                (Path("a.json"), Path("copy.json")))]


def test_nodes_files_add_up_what_each_saw() -> None:
    """Node a wrote s_a, node b wrote s_b: each file accounts for its own streams."""
    node_a = _checkpoint(lineage="a", s_a=Mark(3, MAC[3]))
    node_b = _checkpoint(lineage="b", s_b=Mark(4, MAC[4]))
    report = _report(s_b=_state(2, 2))  # s_a deleted, s_b rolled back
    findings = compare([_source("a.json", node_a), _source("b.json", node_b)], report)
    assert [(f.kind, f.stream, f.files) for f in findings] == [
        (DELETED, "s_a", (Path("a.json"),)), (ROLLED_BACK, "s_b", (Path("b.json"),)),
    ]
    assert compare([_source("a.json", node_a)], report)[0].stream == "s_a"
