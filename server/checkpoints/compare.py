"""The database against the checkpoints: what `circle verify` adds to the chain checks.

The chain and the signed head catch any edit inside a stream, but a stream deleted whole
(records and head together) or a database restored from an older copy is self-consistent.
Only a record of the heads kept elsewhere shows them: each checkpoint mark (stream, seq, MAC)
must still be in the database, on the same chain. Every file is compared on its own, so
several nodes' files (each knows the streams that node wrote) and a file's copy combine by
adding up what each one saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.checkpoints.document import Checkpoint, CheckpointInvalid, read_checkpoint
from server.config import Settings
from server.ledger import Ledger, VerifyReport

DELETED = "STREAM DELETED"
ROLLED_BACK = "ROLLED BACK"
FORKED = "FORKED"
MOVED_BACK = "MOVED BACK"
TAMPERED = "CHECKPOINT TAMPERED"


@dataclass(frozen=True)
class Source:
    """A checkpoint file that was read and whose signature holds."""

    path: Path
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Finding:
    """Evidence of tampering: its kind (one of the constants above), the stream it concerns
    (None for a bad checkpoint file), what was seen, and the files that saw it."""

    kind: str
    stream: str | None
    detail: str
    files: tuple[Path, ...]


@dataclass(frozen=True)
class CheckpointCheck:
    """The chain checks plus the checkpoint comparison: what `circle verify` reports.

    `findings` are evidence of tampering; `warnings` say what could not be checked.
    """

    report: VerifyReport
    sources: list[Source]
    findings: list[Finding]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        """Nothing tampered with, nothing rolled back, nothing deleted (warnings aside)."""
        return self.report.ok and not self.findings


def installation_files(settings: Settings) -> list[Path]:
    """The checkpoint files of this installation, for `circle verify` without `--checkpoint`.

    CIRCLE_CHECKPOINT_FILE if set, else every `checkpoints*.json` beside the keys file (the
    nodes of a cluster sharing a keys directory write one each), plus CIRCLE_CHECKPOINT_COPY.
    """
    if settings.checkpoint_file is not None:
        files = [settings.checkpoint_file]
    else:
        files = sorted(settings.keys_path.parent.glob("checkpoints*.json"))
        files = files or [settings.checkpoint_path]
    if settings.checkpoint_copy is not None:
        files.append(settings.checkpoint_copy)
    return files


async def check(
    ledger: Ledger,
    files: Sequence[Path],
    key: Ed25519PublicKey,
    progress: Callable[[str, int], None] | None = None,
) -> CheckpointCheck:
    """Verify the ledger and compare it with the checkpoints in `files`.

    The files are read before the database: a checkpoint only holds heads already committed,
    so a database read afterwards is never behind it unless it was moved back.
    """
    sources: list[Source] = []
    findings: list[Finding] = []
    missing: list[Path] = []
    for path in files:
        try:
            checkpoint = read_checkpoint(path, key)
        except CheckpointInvalid as bad:
            findings.append(Finding(TAMPERED, None, f"{bad.path}: {bad.reason}", (bad.path,)))
            continue
        if checkpoint is None:
            missing.append(path)
        else:
            sources.append(Source(path, checkpoint))
    marks: dict[str, set[int]] = {}
    for source in sources:
        for stream, mark in source.checkpoint.streams.items():
            marks.setdefault(stream, set()).add(mark.seq)
    report = await ledger.verify(progress, marks=marks)
    findings.extend(compare(sources, report))
    warnings = _stale(sources)
    if sources or findings or report.streams_checked:
        warnings[:0] = [
            f"no checkpoint at {path}: without it a database restored from an older copy or "
            "a stream deleted whole cannot be seen; if the server has run with this file, "
            "it was deleted or moved" for path in missing
        ]
    return CheckpointCheck(report, sources, findings, warnings)


def compare(sources: Sequence[Source], report: VerifyReport) -> list[Finding]:
    """Every way the database disagrees with a checkpoint mark, one finding per kind of
    disagreement and stream, naming every file that shows it.

    Streams the chain checks already found bad are left to them: their state is unknown.
    """
    corrupt = {problem.stream for problem in report.problems}
    seen: dict[tuple[str, str, str], list[Path]] = {}
    for source in sources:
        for stream, mark in sorted(source.checkpoint.streams.items()):
            if stream in corrupt:
                continue
            disagreement = _disagreement(stream, mark.seq, mark.mac, report)
            if disagreement is not None:
                seen.setdefault((stream, *disagreement), []).append(source.path)
            if mark.moved_back_to is not None:
                found = ("the stream gone" if mark.moved_back_to == 0
                         else f"the database at seq {mark.moved_back_to}")
                detail = (f"stream {stream}: while the server ran it found {found}, below "
                          f"seq {mark.seq} it had written")
                seen.setdefault((stream, MOVED_BACK, detail), []).append(source.path)
    return [
        Finding(kind, stream, detail, tuple(files))
        for (stream, kind, detail), files in sorted(seen.items())
    ]


def _disagreement(
    stream: str, seq: int, mac: bytes, report: VerifyReport
) -> tuple[str, str] | None:
    """How the database disagrees with the mark (stream, seq, mac), if it does."""
    state = report.intact.get(stream)
    if state is None:
        return DELETED, (f"stream {stream}: the checkpoint saw it at seq {seq}; the database "
                         "has neither its records nor its head")
    if state.head_seq < seq:
        return ROLLED_BACK, (f"stream {stream}: rolled back (db at seq {state.head_seq}, "
                             f"checkpoint saw {seq})")
    if state.macs.get(seq) == mac:
        return None
    if state.head_seq == seq:
        return FORKED, (f"stream {stream}: forked: the database's head at seq {seq} is not "
                        "the one the checkpoint saw")
    return FORKED, (f"stream {stream}: forked at seq {seq}: the database's record there is "
                    f"not the one the checkpoint saw (db now at seq {state.head_seq}: moved "
                    "back and written again)")


def _stale(sources: Sequence[Source]) -> list[str]:
    """A file behind another of its lineage (its copy): a failed write, or an older copy put
    back. The newer file is compared as well, so this alone hides nothing."""
    newest: dict[str, Source] = {}
    for source in sources:
        best = newest.get(source.checkpoint.lineage)
        if best is None or source.checkpoint.counter > best.checkpoint.counter:
            newest[source.checkpoint.lineage] = source
    warnings = []
    for source in sources:
        best = newest[source.checkpoint.lineage]
        if source.checkpoint.counter < best.checkpoint.counter:
            warnings.append(
                f"{source.path} is older than {best.path} (checkpoint "
                f"{source.checkpoint.counter} < {best.checkpoint.counter}): its writes "
                "failed, or an older copy was put back"
            )
    return warnings
