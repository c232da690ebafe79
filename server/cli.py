"""The `circle` command: serve, manage API keys and data keys, export attendance, verify,
check an installation (doctor)."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
from aiohttp import web
from pydantic import ValidationError

from server import serve_lock
from server.apikeys import CUSTOM_LABEL, ROLE_SCOPES, SCOPES, ApiKey, ApiKeys, Role, Scope
from server.attendance.disclosures import Disclosure, list_disclosures
from server.attendance.service import BATCH_SESSIONS
from server.checkpoints.compare import CheckpointCheck, check, installation_files
from server.checkpoints.writer import CheckpointError
from server.config import Settings
from server.crypto.keyring import KeyRing, KeyRingError
from server.exports import (
    ExportRequest,
    ExportResult,
    attendance_service,
    check_export,
    export_attendance,
    program_minimums,
    write_export,
)
from server.ledger import AUDIT_STREAM, Ledger
from server.storage.database import Database, open_database

T = TypeVar("T")

SHUTDOWN_TIMEOUT_S = 3.0
"""On SIGTERM, open sockets get this long; clients then reconnect to the restarted server."""

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the SQLite file and keys live (default ./circle-data, or CIRCLE_DATA_DIR).",
)


def _settings(**overrides: Any) -> Settings:
    """Settings from flags and CIRCLE_* variables, or a readable error naming the bad one."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"CIRCLE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise click.UsageError(f"bad setting: {problems}") from None


def _run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(work())  # type: ignore[arg-type]


async def _open(settings: Settings) -> tuple[Database, KeyRing, Ledger]:
    keyring = KeyRing.load_or_create(settings.keys_path)
    db = await open_database(settings.db_url)
    return db, keyring, Ledger(db.ledger, keyring)


@click.group()
@click.option("--env-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read CIRCLE_* settings from this KEY=value file first, as "
              "the service does (EnvironmentFile=, e.g. /etc/circle/circle.env); variables "
              "already set in the environment win.")
def main(env_file: Path | None) -> None:
    """Circle: telehealth sessions for outpatient behavioral-health programs."""
    if env_file is not None:
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False, interpolate=False)


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None,
              help="Port to bind (default 8080; 0 picks a free one, written to serve.lock).")
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the whole server on this box (HTTP API, signaling, media relay, ledger)."""
    from server.app import UnsafeDataDir, build_app, private_data_dir

    settings = _settings(host=host, port=port, data_dir=data_dir)
    try:
        private_data_dir(settings.data_dir)
    except UnsafeDataDir as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    log = logging.getLogger("circle")
    from server.doctor import tls_warning

    exposed = tls_warning(settings)
    if exposed is not None:
        log.warning("%s", exposed)
    # Claim the data dir and the port before start-up: start-up replays and recovers live
    # sessions, which must never happen in a second process that cannot serve them.
    try:
        lock = serve_lock.claim(settings.data_dir)
    except serve_lock.DataDirBusy as exc:
        raise click.ClickException(str(exc)) from None
    try:
        sock = socket.create_server((settings.host, settings.port))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    port = int(sock.getsockname()[1])
    settings = settings.model_copy(update={"port": port})  # join links name the real port
    serve_lock.record_address(lock, f"http://{settings.host}:{port}")
    log.info(
        "listening on http://%s:%d (data dir %s, %s)",
        settings.host, port, settings.data_dir.resolve(),
        "PostgreSQL" if settings.db_url.startswith("postgresql") else "SQLite",
    )
    try:
        web.run_app(build_app(settings), sock=sock, print=None, access_log=None,
                    shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    except (KeyRingError, CheckpointError) as exc:
        # The operator's to fix (a key file, a checkpoint that is evidence): say what, in
        # plain words, not as a traceback.
        raise click.ClickException(str(exc)) from None
    finally:
        lock.close()


@main.command()
@data_dir_option
def doctor(data_dir: Path | None) -> None:
    """Check this installation: settings, permissions, database, Redis, TURN, the web app,
    the checkpoints. One line per check; exit 1 when something is wrong."""
    from server.doctor import load_settings, report, run_checks

    loaded = load_settings(data_dir=data_dir)
    if isinstance(loaded, list):  # bad settings: nothing else can be checked
        sys.exit(report(loaded, click.echo))
    settings = loaded
    sys.exit(report(_run(lambda: run_checks(settings)), click.echo))


@main.group()
def keys() -> None:
    """API keys for staff and integrations, and the data-key ring."""


async def _audit_admin(settings: Settings, ledger: Ledger, action: str, **details: Any) -> None:
    """Admin actions are audit events, like exports: who did what, and when."""
    await ledger.append_audit({
        "type": action, "at": settings.clock().isoformat(),
        "by": f"cli:{getpass.getuser()}", **details,
    })


@keys.command("create")
@click.option("--role", type=click.Choice(list(ROLE_SCOPES)), default=None,
              help="Shorthand: staff = schedule, therapist-invites, attendance; admin = admin.")
@click.option("--scope", "scopes", type=click.Choice(SCOPES), multiple=True,
              help="What the key may do; repeat for several (instead of --role).")
@click.option("--name", required=True, help="Who or what uses the key (e.g. 'scheduler').")
@data_dir_option
def keys_create(role: Role | None, scopes: tuple[Scope, ...], name: str,
                data_dir: Path | None) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    if (role is None) == (not scopes):
        raise click.UsageError(
            "give exactly one of --role or --scope (--scope may be repeated)")
    settings = _settings(data_dir=data_dir)

    async def work() -> str:
        db, _, ledger = await _open(settings)
        try:
            plaintext, key = await ApiKeys(db.api_keys, now=settings.clock).create(
                role or scopes, name)
            await _audit_admin(settings, ledger, "api_key_created", key_id=key.id,
                               scopes=sorted(key.scopes))
        finally:
            await db.close()
        click.echo(f"created key {key.id} for {name!r} with scope(s) "
                   f"{', '.join(sorted(key.scopes))}; it is shown only now:", err=True)
        return plaintext

    click.echo(_run(work))


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """List API keys (id, role, name, created, revoked, scopes); secrets are never shown.

    The role column is `custom` for scopes that are no role's shorthand; scopes come last
    so scripts that cut the earlier columns keep working.
    """
    settings = _settings(data_dir=data_dir)

    async def work() -> list[ApiKey]:
        db, _, _ = await _open(settings)
        try:
            return await ApiKeys(db.api_keys).list()
        finally:
            await db.close()

    for key in _run(work):
        revoked = key.revoked_at.isoformat() if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.role or CUSTOM_LABEL}\t{key.name}\t"
                   f"{key.created_at.isoformat()}\t{revoked}\t{','.join(sorted(key.scopes))}")


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke an API key at once (e.g. a leaked scheduler key); it cannot be undone."""
    settings = _settings(data_dir=data_dir)

    async def work() -> bool:
        db, _, ledger = await _open(settings)
        try:
            revoked = await ApiKeys(db.api_keys, now=settings.clock).revoke(key_id)
            if revoked:
                await _audit_admin(settings, ledger, "api_key_revoked", key_id=key_id)
            return revoked
        finally:
            await db.close()

    if not _run(work):
        raise click.ClickException(f"no active API key {key_id!r}")
    click.echo(f"revoked {key_id}")


@keys.command("rotate-data-key")
@data_dir_option
def keys_rotate(data_dir: Path | None) -> None:
    """Start encrypting new records with a fresh data key (old keys still decrypt)."""
    settings = _settings(data_dir=data_dir)
    keyring = KeyRing.load_or_create(settings.keys_path)
    click.echo(f"current data key is now {keyring.rotate_data_key()}; restart the server")


def _parse_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


def export_progress(done: int, total: int) -> None:
    """Progress of a long export, on standard error (never in the export itself)."""
    if total > BATCH_SESSIONS:
        click.echo(f"  read {done} of {total} sessions ({100 * done // total}%)", err=True)


@main.command()
@click.option("--from", "from_date", default=None, callback=_parse_date,
              help="YYYY-MM-DD, first service date (needed unless --session or --participant).")
@click.option("--to", "to_date", default=None, callback=_parse_date,
              help="YYYY-MM-DD, last service date (needed unless --session or --participant).")
@click.option("--session", "session_id", default=None, help="Only this session.")
@click.option("--participant", "participant_id", default=None, help="Only this participant.")
@click.option("--program", type=click.Choice(["IOP", "PHP", "OP"]), default=None,
              help="Only sessions of this program.")
@click.option("--totals", type=click.Choice(["day", "week"]), default=None,
              help="Per-client totals per day or ISO week instead of rows (needs --from/--to).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (owner-only, mode 0600) instead of standard output; a CSV gets "
                   "the redisclosure notice beside it, in FILE.notice.txt (0600).")
@click.option("--notice-line", is_flag=True, default=False,
              help="CSV: put the redisclosure notice in a first line starting with '# '.")
@data_dir_option
def export(from_date: date | None, to_date: date | None, session_id: str | None,
           participant_id: str | None, program: str | None, totals: str | None, fmt: str,
           out: Path | None, notice_line: bool, data_dir: Path | None) -> None:
    """Export attendance rows (one per participant per session), or per-client totals; the
    export is audited (see `circle disclosures`)."""
    request = ExportRequest(from_date, to_date, session_id, participant_id,
                            fmt, program, totals, notice_line)  # type: ignore[arg-type]
    try:
        check_export(request)
    except ValueError as exc:
        raise click.UsageError(str(exc).replace("query parameter ", "--")) from None
    settings = _settings(data_dir=data_dir)

    async def work() -> ExportResult:
        db, keyring, ledger = await _open(settings)
        try:
            click.echo("reading the ledger…", err=True)
            return await export_attendance(
                attendance_service(settings, db, ledger, keyring), ledger, request,
                requested_by=f"cli:{getpass.getuser()}", channel="cli", now=settings.clock(),
                minimums=program_minimums(settings), progress=export_progress,
            )
        finally:
            await db.close()

    result = _run(work)
    beside = None
    if out is None:
        click.echo(result.body, nl=False)
    else:
        beside = write_export(out, result.body, result.notice if fmt == "csv" else None)
    what = {None: "row(s)", "day": "daily total(s)", "week": "weekly total(s)"}[totals]
    click.echo(f"exported {result.rows} {what}{f' to {out}' if out else ''}", err=True)
    if beside is not None:
        click.echo(f"the redisclosure notice is in {beside}; keep it with the file", err=True)
    click.echo(f"NOTICE: {result.notice}", err=True)


@main.command()
@click.option("--from", "from_date", default=None, callback=_parse_date,
              help="YYYY-MM-DD: exports made on or after this day (clinic's zone).")
@click.option("--to", "to_date", default=None, callback=_parse_date,
              help="YYYY-MM-DD: exports made on or before this day.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@data_dir_option
def disclosures(from_date: date | None, to_date: date | None, fmt: str,
                data_dir: Path | None) -> None:
    """List every attendance export (who, when, filters, format, rows): the accounting of
    disclosures. The listing is itself an audit event, not a disclosure."""
    if from_date is not None and to_date is not None and to_date < from_date:
        raise click.UsageError("--to is before --from")
    settings = _settings(data_dir=data_dir)

    async def work() -> list[Disclosure]:
        db, _, ledger = await _open(settings)
        try:
            return await list_disclosures(
                lambda: ledger.load(AUDIT_STREAM), ledger.append_audit, from_date, to_date,
                by=f"cli:{getpass.getuser()}", channel="cli", now=settings.clock(),
                tz=settings.zone,
            )
        finally:
            await db.close()

    found = _run(work)
    if fmt == "json":
        click.echo(json.dumps({"disclosures": [d.to_json() for d in found]}, indent=2))
        return
    for d in found:
        item = d.to_json()
        filters = " ".join(f"{k}={v}" for k, v in d.filters.items() if v is not None)
        click.echo(f"{item['at']}\t{d.by}\t{d.channel}\t{d.what}\t{d.format}\t"
                   f"{d.rows}\t{filters or '-'}")
    click.echo(f"{len(found)} export(s)", err=True)


VERIFY_UNCHECKED = 3
"""`circle verify`'s exit status when nothing was found tampered but something could not be
checked (a checkpoint file is missing); 1 is tampering, rollback or deletion."""


@main.command()
@click.option("--checkpoint", "checkpoint_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint file to compare with; repeat for several (one per node). "
                   "Default: CIRCLE_CHECKPOINT_FILE, or every checkpoints*.json beside the "
                   "keys file, and CIRCLE_CHECKPOINT_COPY.")
@data_dir_option
def verify(checkpoint_files: tuple[Path, ...], data_dir: Path | None) -> None:
    """Check the ledger's hash chains, signed heads and decryptability, and compare it with
    the signed checkpoints kept outside the database (an older copy restored, a stream
    deleted whole). Exit 0: all well; 1: tampered; 3: a checkpoint file is missing."""
    settings = _settings(data_dir=data_dir)
    files = list(checkpoint_files) or installation_files(settings)

    def progress(stream: str, records: int) -> None:
        click.echo(f"  {records} record(s) checked (through {stream})", err=True)

    async def work() -> CheckpointCheck:
        db, keyring, ledger = await _open(settings)
        try:
            return await check(ledger, files, keyring.ledger_public_key, progress)
        finally:
            await db.close()

    result = _run(work)
    report = result.report
    for source in result.sources:
        seen = source.checkpoint
        click.echo(f"checkpoint {source.path}: node {seen.node}, checkpoint {seen.counter} "
                   f"written {seen.written_at.isoformat()}, {len(seen.streams)} stream(s), "
                   f"kept since {seen.since.isoformat()}")
    for problem in report.problems:
        click.echo(f"LEDGER TAMPERED: stream {problem.stream} record {problem.seq}: "
                   f"{problem.reason}", err=True)
    for finding in result.findings:
        seen_in = ", ".join(map(str, finding.files))
        where = "" if finding.stream is None else f" (checkpoint {seen_in})"
        click.echo(f"{finding.kind}: {finding.detail}{where}", err=True)
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if result.ok:
        compared = (f"agrees with {len(result.sources)} checkpoint file(s)" if result.sources
                    else "no checkpoint to compare with")
        click.echo(f"ledger OK: {report.records_checked} record(s) in "
                   f"{report.streams_checked} stream(s), {compared}")
        if result.warnings:
            sys.exit(VERIFY_UNCHECKED)
        return
    bad = report.first_bad
    if bad is not None:
        click.echo(f"first bad record: stream {bad.stream} record {bad.seq}", err=True)
    if result.findings:
        click.echo(f"{len(result.findings)} finding(s) against the checkpoints: the database "
                   "is not what the server had written", err=True)
    sys.exit(1)
