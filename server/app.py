"""Composition root: builds one Circle process (HTTP, Socket.IO, ledger, relay) from Settings.

The single factory used by `circle serve` and by the tests, in the aiohttp-demos manner:
everything with a lifetime is opened in a cleanup context and closed in reverse order.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import socketio
from aiohttp import web
from aiortc import RTCIceServer

from server.apikeys import ApiKeys
from server.attendance.service import AttendanceService
from server.auth.tokens import JoinTokenService
from server.cluster.parts import ClusterParts, open_cluster
from server.config import Settings
from server.crypto.keyring import KeyRing
from server.http_api import MAX_BODY_BYTES, SERVICES, errors_and_auth, setup_routes
from server.ledger import Ledger
from server.metrics import Metrics
from server.origins import ClinicOrigins
from server.services import Services
from server.storage.database import open_database
from server.webapp import setup_web
from signaling.cluster.node import ClusterNode, ClusterTimings
from signaling.edge.fanout import Fanout
from signaling.edge.gateway import Gateway, GatewayLimits
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
    sio = socketio.AsyncServer(
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
    setup_web(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services, relay, cluster = await _start(settings, sio)
        app[SERVICES] = services
        origins.node_urls = lambda: services.sessions.node_urls
        yield
        await services.sessions.close()
        await services.media.close()
        if relay is not None:
            await relay.close()
        await cluster.close()
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
) -> tuple[Services, MediaRelay | WorkerPool | None, ClusterParts]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keyring = KeyRing.load_or_create(settings.keys_path)
    db = await open_database(settings.db_url)
    ledger = Ledger(db.ledger, keyring)
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
        client_config={"ice_servers": settings.ice_servers},
        nodes=lambda: node.node_urls,
    )
    relay = await _start_relay(settings, media, metrics) if settings.media else None
    if relay is not None:
        media.attach(relay)
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
        attendance=AttendanceService(ledger.load, db.sessions.sessions_between, settings.zone),
        metrics=metrics,
        clock=clock,
        redis_ok=cluster.redis_ok,
    )
    today = clock().astimezone(settings.zone).date()
    recent = await db.sessions.sessions_between(today - RECOVERY_WINDOW, today + RECOVERY_WINDOW)
    recovered = await node.start(recent)
    if recovered:
        log.info("recovered %d live session(s) from the ledger", recovered)
    return services, relay, cluster


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

    relay_settings = _relay_settings(settings)
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
