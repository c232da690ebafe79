"""`circle doctor`: checks an installation the way an operator would, one line per check.

Settings, the data dir and keys file permissions, the database (reachable, migration level),
Redis and TURN when configured, the browser app, the checkpoint files, and whether the
server would be reachable over plain HTTP. Nothing here changes anything: no file, database
or schema is created (a SQLite file that does not exist yet is reported, not made).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from server.config import Settings

Status = Literal["ok", "warn", "problem"]

TIMEOUT_S = 5.0
"""How long one network check (database, Redis, TURN) may take."""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    """What to do about it (empty when ok)."""

    def line(self) -> str:
        label = {"ok": "ok", "warn": "WARNING", "problem": "PROBLEM"}[self.status]
        fix = f" -> {self.fix}" if self.fix else ""
        return f"{label:<8} {self.name}: {self.detail}{fix}"


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, "problem", detail, fix)


def load_settings(**overrides: Any) -> Settings | list[Check]:
    """Settings from CIRCLE_* and flags, or one problem line per bad variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        checks = []
        for err in exc.errors(include_input=False):
            name = "_".join(str(p) for p in err["loc"]).upper()
            message = str(err["msg"]).removeprefix("Value error, ")
            checks.append(problem("settings", f"CIRCLE_{name}: {message}" if name else message,
                                  "fix it in the environment or /etc/circle/circle.env "
                                  "(deploy/circle.env.example lists every setting)"))
        return checks


# -- exposure --------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0])).is_loopback
                               for info in infos)


def tls_warning(settings: Settings) -> str | None:
    """Why serving `settings` would put join links and names on the network in clear text:
    bound beyond loopback while the public URL is not https:// (no TLS proxy in front)."""
    if _loopback(settings.host) or settings.base_url.startswith("https://"):
        return None
    return (f"listening on {settings.host}, beyond this machine, over plain HTTP, and "
            f"CIRCLE_PUBLIC_URL is not https:// ({settings.base_url}): join links, their "
            "tokens and participants' names would cross the network unencrypted. Put nginx "
            "with TLS in front (deploy/nginx/circle.conf, docs/operations.md) and set "
            "CIRCLE_PUBLIC_URL=https://<your host>; keep circle serve on 127.0.0.1 or a "
            "private address")


def _exposure(settings: Settings) -> Check:
    warning = tls_warning(settings)
    if warning is None:
        where = ("loopback only" if _loopback(settings.host)
                 else f"{settings.host}, behind {settings.base_url}")
        return ok("exposure", f"{where}")
    return Check("exposure", "warn", warning)


# -- files -------------------------------------------------------------------------------------


def _mode(path: Path) -> str:
    return stat.filemode(path.stat().st_mode)


def _data_dir(settings: Settings) -> Check:
    path = settings.data_dir
    if not path.exists():
        return ok("data dir", f"{path} does not exist yet (circle serve creates it, mode 0700)")
    if not path.is_dir():
        return problem("data dir", f"{path} is not a directory",
                       "point CIRCLE_DATA_DIR (or --data-dir) at a directory")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return problem("data dir", f"{path} can be opened by group or others ({_mode(path)}); "
                       "circle serve refuses it", f"chmod 700 {path}")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return problem("data dir", f"{path} is not writable by this user (uid {os.geteuid()})",
                       "run circle as the user that owns it")
    loose = [f for f in sorted(path.glob("circle.db*")) if f.stat().st_mode & 0o077]
    if loose:
        return Check("data dir", "warn", f"{', '.join(map(str, loose))} can be read by group or "
                     "others (a circle command run under a loose umask made it); circle serve "
                     "makes it 0600 at its next start", f"chmod 600 {' '.join(map(str, loose))}")
    return ok("data dir", f"{path} ({_mode(path)})")


def _keys_file(settings: Settings, has_records: bool | None) -> tuple[Check, Any]:
    """The keys file check, and the key ring when it could be read (for the checkpoints)."""
    from server.crypto.keyring import KeyRing, KeyRingError

    path = settings.keys_path
    if not path.exists():
        if has_records:
            return problem("keys file", f"{path} is missing but the ledger has records: "
                           "without it they cannot be read",
                           "restore keys.json from its backup (never start the server "
                           "without it: it would make new keys)"), None
        return ok("keys file", f"{path} does not exist yet (circle serve creates it, "
                  "mode 0600; back it up apart from the database)"), None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return problem("keys file", f"{path} can be read by group or others ({_mode(path)})",
                       f"chmod 600 {path}"), None
    try:
        keyring = KeyRing.load_or_create(path)  # it exists: this only reads it
    except (KeyRingError, OSError) as exc:
        return problem("keys file", f"{path} cannot be read: {exc}",
                       "restore keys.json from its backup"), None
    return ok("keys file", f"{path} ({_mode(path)}, {len(keyring.key_ids)} data key(s))"), keyring


def _web_app(settings: Settings) -> Check:
    from server.webapp import web_dir

    root = web_dir(settings.web_dir)
    index = root / "index.html"
    fix = ("install Circle from its wheel or sdist (they carry the app), or in a checkout run "
           "scripts/bootstrap (npm run build in client/web); CIRCLE_WEB_DIR names another "
           "directory")
    if not index.is_file():
        return problem("web app", f"no built browser app in {root} (no index.html): /join "
                       "would only say it is not built", fix)
    html = index.read_text(encoding="utf-8", errors="replace")
    missing = [ref for ref in re.findall(r'(?:src|href)="/(assets/[^"]+)"', html)
               if not (root / ref).is_file()]
    if missing:
        return problem("web app", f"{index} names files that are not there: "
                       f"{', '.join(missing)}", fix)
    return ok("web app", f"{root}")


def _checkpoints(settings: Settings, keyring: Any, has_records: bool | None) -> list[Check]:
    from server.checkpoints.document import CheckpointInvalid, read_checkpoint

    checks = []
    for path in settings.checkpoint_paths:
        name = "checkpoint file"
        if path.parent.is_dir() and not os.access(path.parent, os.W_OK | os.X_OK):
            checks.append(problem(name, f"the server cannot write {path.parent}",
                                  "set CIRCLE_CHECKPOINT_FILE (and CIRCLE_CHECKPOINT_COPY) to a "
                                  "place it can write, e.g. in the data dir"))
            continue
        if keyring is None:
            if settings.keys_path.exists():
                checks.append(Check(name, "warn", f"{path}: not checked (the keys file could "
                                    "not be read, see above)"))
            else:
                checks.append(ok(name, f"{path} not written yet (circle serve writes it)"))
            continue
        try:
            seen = read_checkpoint(path, keyring.ledger_public_key)
        except CheckpointInvalid as exc:
            checks.append(problem(name, f"{exc}", "it is evidence: run circle verify, keep the "
                                  "file, and see docs/operations.md (Backups)"))
            continue
        if seen is None:
            if has_records:
                # `circle keys create` before the first start leaves records and no file yet.
                checks.append(Check(name, "warn", f"{path} is missing while the ledger has "
                                    "records: circle verify exits 3 until circle serve has run "
                                    "here", "if it has run with this data before, the file was "
                                    "lost or moved: find it (docs/operations.md, Backups)"))
            else:
                checks.append(ok(name, f"{path} not written yet (circle serve writes it)"))
            continue
        checks.append(ok(name, f"{path}: checkpoint {seen.counter} of node {seen.node}, "
                      f"{len(seen.streams)} stream(s), written {seen.written_at.isoformat()}"))
    return checks


# -- services ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseState:
    check: Check
    has_records: bool | None
    """Whether the ledger holds any record (None: unknown, the database was not read)."""


async def _database(settings: Settings) -> DatabaseState:
    from sqlalchemy import func, inspect, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from server.storage.schema import MIGRATIONS, ledger_heads, schema_migrations

    url = make_url(settings.db_url)
    sqlite = url.drivername.startswith("sqlite")
    where = (f"SQLite {url.database}" if sqlite
             else f"PostgreSQL at {url.host}:{url.port or 5432}/{url.database}")
    if sqlite and not _is_file(url.database):
        return DatabaseState(ok("database", f"{where} does not exist yet (circle serve "
                                "creates it and its schema)"), False)
    args = {} if sqlite else {"timeout": TIMEOUT_S}
    engine = create_async_engine(url, connect_args=args)
    newest = max(m.version for m in MIGRATIONS)
    try:
        async with asyncio.timeout(TIMEOUT_S * 2), engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            if schema_migrations.name not in tables:
                return DatabaseState(ok("database", f"{where} reachable, empty (circle serve "
                                        f"creates schema version {newest} at start)"), False)
            applied = set((await conn.execute(select(schema_migrations.c.version))).scalars())
            streams = 0
            if ledger_heads.name in tables:
                streams = int((await conn.execute(
                    select(func.count()).select_from(ledger_heads))).scalar_one())
    except Exception as exc:  # any driver's error, in its own words
        return DatabaseState(problem("database", f"cannot reach {where}: {_reason(exc)}",
                                     "check CIRCLE_DATABASE_URL, that the database runs and "
                                     "accepts this user"), None)
    finally:
        await engine.dispose()
    unknown = sorted(v for v in applied if v > newest)
    if unknown:
        return DatabaseState(problem("database", f"{where} was migrated by a newer Circle "
                                     f"(schema versions {unknown}; this one knows up to "
                                     f"{newest})", "upgrade Circle on this machine"), None)
    level = max(applied, default=0)
    pending = "" if level >= newest else (
        f"; migrations {level + 1}-{newest} run at the next start (back up the database "
        "first)")
    return DatabaseState(ok("database", f"{where} reachable, schema version {level} of "
                            f"{newest}, {streams} ledger stream(s){pending}"), streams > 0)


async def _redis(settings: Settings) -> Check | None:
    if settings.redis_url is None:
        return None
    from redis.asyncio import Redis

    from server.cluster.redis_client import open_redis

    client: Redis = open_redis(settings.redis_url)
    where = re.sub(r"//[^@/]*@", "//***@", settings.redis_url)  # never print a password
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await client.ping()
    except Exception as exc:  # redis-py raises many kinds
        return problem("redis", f"no answer from {where}: {_reason(exc)}",
                       "check CIRCLE_REDIS_URL and that Redis runs and is reachable from here")
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    return ok("redis", f"{where} answers PING")


async def _turn(settings: Settings) -> list[Check]:
    if settings.turn_secret is None:
        return []
    from server.turn import turn_password

    secret = settings.turn_secret.get_secret_value()
    # Minted as for a participant (server/turn.py), for a minute, with a tag of its own.
    username = f"{int(settings.clock().timestamp()) + 60}:circle-doctor"
    password = turn_password(secret, username)
    return list(await asyncio.gather(
        *(turn_check(url, username, password) for url in settings.turn_urls)))


class _Released(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def turn_check(url: str, username: str, password: str) -> Check:
    """A real TURN allocation at `url` with these credentials, released at once."""
    from aioice import stun
    from aioice.turn import create_turn_endpoint

    from server.turn import parse_turn_url

    parsed = parse_turn_url(url)
    where = f"{parsed.host}:{parsed.port} ({parsed.transport}{', TLS' if parsed.tls else ''})"
    started = time.monotonic()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            transport, protocol = await create_turn_endpoint(
                _Released, (parsed.host, parsed.port), username, password,
                lifetime=60, transport=parsed.transport, ssl=parsed.tls or None)
            relayed = transport.get_extra_info("sockname")
            took = time.monotonic() - started
            transport.close()  # deletes the allocation
            await protocol.closed
    except stun.TransactionFailed as exc:
        code = exc.response.attributes.get("ERROR-CODE", (0, ""))
        if code[0] in (401, 431):
            return problem("turn", f"{url}: {where} refused Circle's credentials "
                           f"({code[0]} {code[1]})", "CIRCLE_TURN_SECRET must equal coturn's "
                           "static-auth-secret (with use-auth-secret), and both clocks be "
                           "right (NTP)")
        return problem("turn", f"{url}: {where} refused the allocation ({code[0]} {code[1]})",
                       "see the TURN server's log")
    except ssl.SSLCertVerificationError as exc:
        return problem("turn", f"{url}: {where} shows a certificate this machine does not "
                       f"trust ({exc.verify_message})", f"a turns: URL needs a certificate "
                       f"valid for {parsed.host} from a public CA (e.g. certbot): browsers "
                       "check it too")
    except (TimeoutError, stun.TransactionTimeout):
        return problem("turn", f"{url}: no answer from {where} in {TIMEOUT_S:.0f} s",
                       "check that coturn runs there and that the port is open to this host")
    except (OSError, ConnectionError) as exc:
        return problem("turn", f"{url}: cannot reach {where}: {_reason(exc)}",
                       "check that coturn runs there and that the port is open to this host")
    return ok("turn", f"{url}: allocated a relay {relayed[0]}:{relayed[1]} with Circle's "
              f"credentials ({took * 1000:.0f} ms)")


def _is_file(path: str | None) -> bool:
    return bool(path) and Path(str(path)).is_file()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {TIMEOUT_S:.0f} s"
    text = str(getattr(exc, "strerror", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- all together --------------------------------------------------------------------------------


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order an operator reads them."""
    checks = [ok("settings", _summary(settings)), _exposure(settings), _data_dir(settings)]
    database = await _database(settings)
    keys, keyring = _keys_file(settings, database.has_records)
    checks += [keys, database.check]
    network: list[Awaitable[Any]] = [_redis(settings), _turn(settings)]
    redis, turn = await asyncio.gather(*network)
    if redis is not None:
        checks.append(redis)
    checks += turn
    checks.append(_web_app(settings))
    checks += _checkpoints(settings, keyring, database.has_records)
    return checks


def _summary(settings: Settings) -> str:
    parts = ["PostgreSQL" if settings.db_url.startswith("postgresql") else "SQLite",
             "Redis (several nodes)" if settings.redis_url else "one node",
             "TURN credentials" if settings.turn_secret else "no TURN"]
    return f"loaded ({', '.join(parts)}; node {settings.node_name})"


def report(checks: list[Check], echo: Callable[[str], None]) -> int:
    """Print one line per check and a last line; the exit status (1 on any problem)."""
    for check in checks:
        echo(check.line())
    problems = sum(c.status == "problem" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    if problems:
        echo(f"circle doctor: {problems} problem(s), {warnings} warning(s)")
        return 1
    echo(f"circle doctor: all {len(checks)} checks passed"
         + (f", {warnings} warning(s)" if warnings else ""))
    return 0
