"""Composition root: builds one Circle process (HTTP, Socket.IO, ledger, relay) from Settings.

The single factory used by `circle serve` and by the tests, in the aiohttp-demos manner:
everything with a lifetime is opened in a cleanup context and closed in reverse order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import stat
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import socketio
from aiohttp import web
from aiortc import RTCIceServer
from sqlalchemy.engine import make_url

from server.apikeys import ApiKeys
from server.attendance.warmer import RowWarmer
from server.auth.tokens import JoinTokenService
from server.checkpoints.writer import CheckpointWriter
from server.cluster.parts import ClusterParts, open_cluster
from server.config import Settings
from server.crypto.keyring import KeyRing
from server.exports import attendance_service
from server.http_api import MAX_BODY_BYTES, SERVICES, errors_and_auth, setup_routes
from server.ledger import Ledger
from server.metrics import Metrics
from server.origins import ClinicOrigins
from server.services import Services
from server.storage.database import open_database
from server.turn import TurnCredentials, client_config
from server.webapp import setup_web
from signaling.cluster.node import ClusterNode, ClusterTimings
from signaling.edge.fanout import Fanout
from signaling.edge.gateway import Gateway, GatewayLimits
from signaling.edge.guard import GuardedServer
from signaling.edge.media import MediaCoordinator
from signaling.edge.sessions import SessionService

if TYPE_CHECKING:
    from server.media.relay import MediaRelay
    from server.media.settings import RelaySettings
    from server.media.workers.pool import WorkerPool

log = logging.getLogger("circle.app")

RECOVERY_WINDOW = timedelta(days=2)
"""Sessions scheduled this close to now may still be live after a restart."""

SOCKET_BUFFER_BYTES = 1_000_000
"""Engine.IO's hard cap: bigger messages close the transport. Smaller ones over the
gateway's own cap (64 KiB) get an `invalid` ack instead."""


def build_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.middlewares.append(errors_and_auth)
    origins = ClinicOrigins()
    sio = GuardedServer(
        async_mode="aiohttp",
        cors_allowed_origins=origins,
        max_http_buffer_size=SOCKET_BUFFER_BYTES,
        ping_interval=10,
        ping_timeout=10,
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    setup_routes(app)
    setup_web(app, settings.web_dir)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services, relay, cluster, checkpoints = await _start(settings, sio)
        app[SERVICES] = services
        origins.node_urls = lambda: services.sessions.node_urls
        yield
        await services.sessions.close()
        await services.media.close()
        if relay is not None:
            await relay.close()
        await cluster.close()
        await checkpoints.close()  # after the last append: a clean stop loses no mark
        await services.db.close()

    async def drain(app: web.Application) -> None:
        """SIGTERM (aiohttp's graceful exit): the sockets are still open here."""
        services = app.get(SERVICES)
        if services is not None:
            await services.sessions.drain()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(drain)
    return app


async def _start(
    settings: Settings, sio: socketio.AsyncServer
) -> tuple[Services, MediaRelay | WorkerPool | None, ClusterParts, CheckpointWriter]:
    private_data_dir(settings.data_dir)
    keyring = KeyRing.load_or_create(settings.keys_path)
    _private_sqlite_file(settings.db_url)
    db = await open_database(settings.db_url)
    checkpoints = CheckpointWriter(settings.checkpoint_paths, keyring, settings.node_name,
                                   settings.clock)
    ledger = Ledger(db.ledger, keyring, on_head=checkpoints.saw)
    await checkpoints.start(ledger)  # before recovery, whose appends it must see
    metrics = Metrics()
    clock = settings.clock
    if clock.offset:
        log.warning("the server's clock is moved by %s (CIRCLE_CLOCK_OFFSET_S): for tests only",
                    clock.offset)
    tokens = JoinTokenService(keyring.token_private_key, keyring.token_public_key, clock=clock)
    cluster = open_cluster(settings, ledger.claim_fence)
    fanout = Fanout(sio, clock, settings.node_name)
    ttl = settings.lease_ttl_s
    node = ClusterNode(
        settings.node_name, settings.base_url,
        event_log=ledger, leases=cluster.leases, directory=cluster.directory,
        bus=cluster.bus, fanout=fanout, clock=clock,
        timings=ClusterTimings(lease_ttl_s=ttl, renew_every_s=ttl / 3,
                               heartbeat_every_s=ttl / 3, node_ttl_s=ttl),
        load=_load,
    )
    media = MediaCoordinator(fanout, node.hub)
    node.attach(SessionService(node.hub, fanout, media, clock, keyring.pseudonym), media)
    gateway = Gateway(
        sio,
        fanout,
        node,
        tokens,
        limits=GatewayLimits(burst=settings.events_burst, per_second=settings.events_per_second),
        on_event=metrics.event_handled,
        client_config=client_config(settings.ice_servers, _turn(settings, keyring)),
        nodes=lambda: node.node_urls,
    )
    relay = await _start_relay(settings, media, metrics) if settings.media else None
    if relay is not None:
        media.attach(relay)
    attendance = attendance_service(settings, db, ledger, keyring)
    node.hub.add_observer(RowWarmer(attendance, clock))  # rows sealed as each session ends
    services = Services(
        settings=settings,
        db=db,
        keyring=keyring,
        ledger=ledger,
        sessions=node,
        gateway=gateway,
        media=media,
        tokens=tokens,
        api_keys=ApiKeys(db.api_keys, now=clock),
        attendance=attendance,
        metrics=metrics,
        clock=clock,
        redis_ok=cluster.redis_ok,
    )
    today = clock().astimezone(settings.zone).date()
    recent = await db.sessions.sessions_between(today - RECOVERY_WINDOW, today + RECOVERY_WINDOW)
    recovered = await node.start(recent)
    if recovered:
        log.info("recovered %d live session(s) from the ledger", recovered)
    return services, relay, cluster, checkpoints


def _turn(settings: Settings, keyring: KeyRing) -> TurnCredentials | None:
    """TURN credentials minted per participant (CIRCLE_TURN_SECRET and CIRCLE_TURN_URLS)."""
    if settings.turn_secret is None:
        return None
    return TurnCredentials(settings.turn_secret.get_secret_value(), tuple(settings.turn_urls),
                           settings.turn_ttl_s, settings.clock, keyring.pseudonym)


class UnsafeDataDir(Exception):
    """The data dir can be opened by group or others: the server refuses to start in it."""


def private_data_dir(path: Path) -> None:
    """Create the data dir owner-only (0700), or refuse one that group or others can open.

    It holds the database and by default the keys and checkpoints. A looser directory was
    someone's choice that the server does not silently overrule, nor silently accept: it
    says which chmod makes it safe, as it does for the keys file.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UnsafeDataDir(
            f"data dir {path} is accessible by group or others (mode {stat.filemode(mode)}); "
            f"run chmod 700 {path}"
        )


def _private_sqlite_file(url: str) -> None:
    """Make the SQLite file (and its -wal and -shm) owner-only, before SQLite opens it.

    SQLite creates the file 0644 less the umask and gives -wal and -shm the main file's
    mode, so it is created 0600 here first (an empty file is an empty database), or
    tightened when a `circle` command run under a looser umask made it first.
    """
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return  # PostgreSQL, or a URL open_database refuses with its own message
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(0o600)
                log.warning("%s was mode %o: made it 0600 (owner only)", file, mode)


def _load() -> float:
    """The 1-minute load average per core: what placement compares between nodes."""
    return os.getloadavg()[0] / (os.cpu_count() or 1)


async def _start_relay(
    settings: Settings, listener: MediaCoordinator, metrics: Metrics
) -> MediaRelay | WorkerPool:
    """The media relay: worker processes, or in-process (CIRCLE_MEDIA_WORKERS=0).

    Imported here so a media-less server never loads aiortc.
    """
    from server.media.relay import MediaRelay
    from server.media.report import inprocess_report
    from server.media.workers.pool import WorkerPool
    from server.media.workers.settings import WorkerSettings

    relay_settings = dataclasses.replace(_relay_settings(settings),
                                         flow_sample_s=settings.media_flow_sample_s)
    count = settings.media_worker_count
    if count == 0:
        relay = MediaRelay(listener, relay_settings)
        metrics.watch_media(lambda: inprocess_report(relay))
        return relay
    pool = WorkerPool(listener, WorkerSettings.of(relay_settings, settings.log_level), count)
    await pool.start()
    metrics.watch_media(pool.reports)
    return pool


def _relay_settings(settings: Settings) -> RelaySettings:
    from server.media.settings import RelaySettings

    loopback = ipaddress.ip_address(_resolve(settings.host)).is_loopback
    if loopback and not settings.allowed_candidate_networks:
        return RelaySettings.for_loopback()
    return RelaySettings(
        ice_servers=[RTCIceServer(**server) for server in settings.ice_servers],
        allowed_networks=tuple(
            ipaddress.ip_network(n, strict=False) for n in settings.allowed_candidate_networks
        ),
        gather_loopback=loopback,
    )


def _resolve(host: str) -> str:
    return "127.0.0.1" if host in ("localhost", "") else host
