"""The `circle` command: serve, manage API keys and data keys, export attendance, verify."""

from __future__ import annotations

import asyncio
import getpass
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
from server.apikeys import ApiKey, ApiKeys
from server.attendance.service import AttendanceService
from server.config import Settings
from server.crypto.keyring import KeyRing
from server.exports import ExportRequest, export_attendance
from server.ledger import Ledger
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
def main() -> None:
    """Circle: telehealth sessions for outpatient behavioral-health programs."""


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None,
              help="Port to bind (default 8080; 0 picks a free one, written to serve.lock).")
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the whole server on this box (HTTP API, signaling, media relay, ledger)."""
    from server.app import build_app

    settings = _settings(host=host, port=port, data_dir=data_dir)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    log = logging.getLogger("circle")
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
    finally:
        lock.close()


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
@click.option("--role", type=click.Choice(["staff", "admin"]), required=True)
@click.option("--name", required=True, help="Who or what uses the key (e.g. 'scheduler').")
@data_dir_option
def keys_create(role: str, name: str, data_dir: Path | None) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    settings = _settings(data_dir=data_dir)

    async def work() -> str:
        db, _, ledger = await _open(settings)
        try:
            plaintext, key = await ApiKeys(db.api_keys, now=settings.clock).create(role, name)  # type: ignore[arg-type]
            await _audit_admin(settings, ledger, "api_key_created", key_id=key.id, role=role)
        finally:
            await db.close()
        click.echo(f"created {role} key {key.id} for {name!r}; it is shown only now:", err=True)
        return plaintext

    click.echo(_run(work))


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """List API keys (id, role, name, created, revoked); secrets are never shown."""
    settings = _settings(data_dir=data_dir)

    async def work() -> list[ApiKey]:
        db, _, _ = await _open(settings)
        try:
            return await ApiKeys(db.api_keys).list()
        finally:
            await db.close()

    for key in _run(work):
        revoked = key.revoked_at.isoformat() if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.role}\t{key.name}\t{key.created_at.isoformat()}\t{revoked}")


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


def _parse_date(ctx: click.Context, param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


@main.command()
@click.option("--from", "from_date", required=True, callback=_parse_date, help="YYYY-MM-DD")
@click.option("--to", "to_date", required=True, callback=_parse_date, help="YYYY-MM-DD")
@click.option("--session", "session_id", default=None, help="Only this session.")
@click.option("--participant", "participant_id", default=None, help="Only this participant.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
@data_dir_option
def export(from_date: date, to_date: date, session_id: str | None, participant_id: str | None,
           fmt: str, out: Path | None, data_dir: Path | None) -> None:
    """Export attendance rows (one per participant per session); the export is audited."""
    if to_date < from_date:
        raise click.BadParameter("--to is before --from")
    settings = _settings(data_dir=data_dir)

    async def work() -> tuple[str, int, str]:
        db, _, ledger = await _open(settings)
        try:
            service = AttendanceService(ledger.load, db.sessions.sessions_between, settings.zone)
            request = ExportRequest(from_date, to_date, session_id, participant_id,
                                    fmt)  # type: ignore[arg-type]
            click.echo("reading the ledger…", err=True)
            result = await export_attendance(
                service, ledger, request, requested_by=f"cli:{getpass.getuser()}",
                channel="cli", now=settings.clock(),
            )
        finally:
            await db.close()
        return result.body, result.rows, result.notice

    body, rows, notice = _run(work)
    if out is None:
        click.echo(body, nl=False)
    else:
        out.write_text(body, encoding="utf-8")
    click.echo(f"exported {rows} row(s){f' to {out}' if out else ''}", err=True)
    click.echo(f"NOTICE: {notice}", err=True)


@main.command()
@data_dir_option
def verify(data_dir: Path | None) -> None:
    """Check the ledger's hash chains, signed heads and decryptability; exit 1 if tampered."""
    settings = _settings(data_dir=data_dir)

    def progress(stream: str, records: int) -> None:
        click.echo(f"  {records} record(s) checked (through {stream})", err=True)

    async def work() -> Any:
        db, _, ledger = await _open(settings)
        try:
            return await ledger.verify(progress)
        finally:
            await db.close()

    report = _run(work)
    bad = report.first_bad
    if bad is None:
        click.echo(f"ledger OK: {report.records_checked} record(s) in "
                   f"{report.streams_checked} stream(s)")
        return
    for problem in report.problems:
        click.echo(f"LEDGER TAMPERED: stream {problem.stream} record {problem.seq}: "
                   f"{problem.reason}", err=True)
    click.echo(f"first bad record: stream {bad.stream} record {bad.seq}", err=True)
    sys.exit(1)
