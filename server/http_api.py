"""The HTTP API of the v1 contract: sessions, invites, attendance, keys, health and metrics.

Every /api/ route needs an API key holding the route's scope (`API_ROUTES`; 403 naming the
missing scope otherwise); request bodies are pydantic models with extra fields forbidden;
every error is JSON `{"error": {"code", "message"}}` and carries no PHI. Sessions and
invites go through the session owners like any other command, so they land in the ledger,
with the key's id as the actor, before the response is sent; exports and key management are
audit events naming the key.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.apikeys import ApiKey, Scope, invite_scope
from server.attendance.disclosures import list_disclosures
from server.attendance.totals import PERIODS, Period
from server.exports import ExportRequest, check_export, export_attendance, program_minimums
from server.ledger import AUDIT_STREAM
from server.metrics import CONTENT_TYPE_LATEST
from server.services import Services
from signaling.core import commands as c
from signaling.core.model import Program, Role, Service, is_observer
from signaling.core.policy import Rejected
from signaling.core.translate import plan_from
from signaling.protocol import BreakoutPlanPayload

log = logging.getLogger("circle.http")

SERVICES = web.AppKey("services", Services)
API_KEY = "api_key"
MAX_BODY_BYTES = 64 * 1024
STATUS_FOR = {"forbidden": 403, "invalid": 400, "not_found": 404, "conflict": 409,
              "rate_limited": 429}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_Body):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["group", "individual", "family"]
    program: Literal["IOP", "PHP", "OP"]
    starts_at: datetime
    minutes: Annotated[int, Field(ge=5, le=720)]
    service: Service | None = None
    """Default: the kind's (group -> group_psychotherapy, family -> family_psychotherapy,
    individual -> individual_psychotherapy)."""
    checkin_required: bool = False
    observers_may_chat: bool = False
    e2ee: bool | None = None
    """None: the clinic's default (CIRCLE_E2EE_DEFAULT)."""
    """Observers (invite role `observer`) may send chat; by default they only read it."""


class InviteCreate(_Body):
    participant_id: Id
    display_name: Annotated[str, Field(min_length=1, max_length=120)]
    role: Role
    ttl_s: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 24 * 3600


class KeyCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1)]


def api_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _rejected(decision: Rejected) -> web.Response:
    return api_error(STATUS_FOR.get(decision.code, 400), decision.code, decision.message)


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The request's JSON body as `model`, or an HTTP 400 with what is wrong."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "invalid", f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "invalid", "body must be JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_input=False)[:5]
        )
        raise ApiError(400, "invalid", problems) from None


class ApiError(Exception):
    """Raised by handlers for a refused request; the middleware renders it as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API-key check for /api/, JSON errors everywhere, one metrics line per request."""
    services = request.app[SERVICES]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    try:
        if request.path.startswith("/api/"):
            key = await _authenticate(request, services)
            if key is None:
                response: web.StreamResponse = api_error(
                    401, "unauthorized", "a valid API key is required (Authorization: Bearer)"
                )
                return response
            request[API_KEY] = key
        response = await handler(request)
    except ApiError as exc:
        response = api_error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        response = api_error(exc.status, _code_for(exc.status), exc.reason)
    except Exception:
        log.exception("HTTP handler failed on %s", route)
        response = api_error(500, "internal", "the server could not handle this request")
    services.metrics.http.labels(route, str(response.status)).inc()
    return response


def _code_for(status: int) -> str:
    return {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "invalid", 409: "conflict", 413: "invalid", 429: "rate_limited"}.get(
        status, "internal")


async def _authenticate(request: web.Request, services: Services) -> ApiKey | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return await services.api_keys.authenticate(value.strip())


def _key(request: web.Request) -> ApiKey:
    key: ApiKey = request[API_KEY]
    return key


def _require(request: web.Request, *scopes: Scope) -> None:
    """Refuse unless the key holds one of `scopes`; the message names the first."""
    key = _key(request)
    if not any(key.allows(scope) for scope in scopes):
        raise ApiError(403, "forbidden", f"this API key lacks the '{scopes[0]}' scope")


def _actor(request: web.Request) -> c.Actor:
    return c.Actor.staff(_key(request).id)


def _by(request: web.Request) -> str:
    """Who made the call, as audit records name it."""
    return f"api_key:{_key(request).id}"


async def create_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body: SessionCreate = await parse_body(request, SessionCreate)
    if body.starts_at.tzinfo is None:
        return api_error(400, "invalid", "starts_at: include a timezone offset (e.g. Z)")
    session_id = "s_" + secrets.token_hex(8)
    command = c.CreateSession(
        session_id=session_id,
        title=body.title,
        kind=body.kind,
        program=body.program,
        starts_at=body.starts_at.astimezone(UTC),
        minutes=body.minutes,
        reconnect_grace_s=services.settings.reconnect_grace_s,
        service=body.service,
        checkin_required=body.checkin_required,
        observers_may_chat=body.observers_may_chat,
        e2ee=services.settings.e2ee_default if body.e2ee is None else body.e2ee,
    )
    decision = await services.sessions.submit(session_id, _actor(request), command)
    if isinstance(decision, Rejected):
        return _rejected(decision)
    await services.db.sessions.index_session(
        session_id, body.starts_at.astimezone(services.settings.zone)
    )
    return web.json_response(await _summary(services, session_id), status=201)


async def create_invite(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    session_id = request.match_info["session_id"]
    body: InviteCreate = await parse_body(request, InviteCreate)
    _require(request, invite_scope(body.role))
    state = await services.sessions.state(session_id)
    if not state.exists:
        return api_error(404, "not_found", "no such session")
    issued = services.tokens.issue(
        session_id=session_id,
        participant_id=body.participant_id,
        name=body.display_name,
        role=body.role,
        ttl_s=body.ttl_s,
    )
    command = c.IssueInvite(
        participant_id=body.participant_id,
        display_name=body.display_name,
        role=body.role,
        token_id=issued.token_id,
        expires_at=issued.expires_at,
    )
    decision = await services.sessions.submit(session_id, _actor(request), command)
    if isinstance(decision, Rejected):
        return _rejected(decision)
    return web.json_response(
        {
            "token": issued.token,
            "token_id": issued.token_id,
            # An observer's page skips the camera check (it never publishes): a hint for
            # the page only; the relay enforces it whatever the link says.
            "join_url": f"{services.settings.base_url}/join?"
                        f"{'observe=1&' if is_observer(body.role) else ''}token={issued.token}",
            "participant_id": body.participant_id,
            "role": body.role,
            "expires_at": issued.expires_at.isoformat(),
        },
        status=201,
    )


async def revoke_invite(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    session_id = request.match_info["session_id"]
    command = c.RevokeInvite(request.match_info["token_id"])
    decision = await services.sessions.submit(session_id, _actor(request), command)
    if isinstance(decision, Rejected):
        return _rejected(decision)
    return web.json_response({"revoked": True})


async def save_breakout_plan(request: web.Request) -> web.Response:
    """Staff prepare role-play rooms before the session; the therapist opens them later."""
    services = request.app[SERVICES]
    session_id = request.match_info["session_id"]
    body: BreakoutPlanPayload = await parse_body(request, BreakoutPlanPayload)
    command = c.SaveBreakoutPlan(plan_from(body))
    decision = await services.sessions.submit(session_id, _actor(request), command)
    if isinstance(decision, Rejected):
        return _rejected(decision)
    return web.json_response({"saved": True})


async def get_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    session_id = request.match_info["session_id"]
    summary = await _summary(services, session_id)
    if summary is None:
        return api_error(404, "not_found", "no such session")
    return web.json_response(summary)


async def _summary(services: Services, session_id: str) -> dict[str, Any] | None:
    state = await services.sessions.state(session_id)
    if state.info is None:
        return None
    parts = list(state.participants.values())
    return {
        "id": state.info.id,
        "title": state.info.title,
        "kind": state.info.kind,
        "program": state.info.program,
        "starts_at": state.info.starts_at.isoformat(),
        "minutes": state.info.minutes,
        "service": state.info.service,
        "checkin_required": state.info.checkin_required,
        "observers_may_chat": state.info.observers_may_chat,
        "e2ee": state.info.e2ee,
        "locked": state.locked,
        "ended": state.ended,
        "counts": {
            "invited": len(state.invitees),
            "waiting": sum(p.status == "waiting" for p in parts),
            "admitted": sum(p.status == "admitted" for p in parts),
            "connected": sum(p.connected and p.status in ("waiting", "admitted") for p in parts),
        },
    }


PROGRAMS: tuple[str, ...] = get_args(Program)


def _query_date(request: web.Request, name: str) -> date | None:
    """A `YYYY-MM-DD` query parameter, None when absent or empty."""
    value = request.query.get(name) or None
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid", f"{name}: use YYYY-MM-DD") from None


def _export_request(request: web.Request, totals: Period | None = None) -> ExportRequest:
    """The query of an attendance or totals export (docs/protocol.md, "Attendance")."""
    query = request.query
    fmt = query.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise ApiError(400, "invalid", "format must be csv or json")
    program = query.get("program") or None
    if program is not None and program not in PROGRAMS:
        raise ApiError(400, "invalid", f"program must be one of {', '.join(PROGRAMS)}")
    notice = query.get("notice_line", "0")
    if notice not in ("0", "1", "false", "true"):
        raise ApiError(400, "invalid", "notice_line must be 1 or 0")
    return ExportRequest(
        from_date=_query_date(request, "from"),
        to_date=_query_date(request, "to"),
        session_id=query.get("session") or None,
        participant_id=query.get("participant") or None,
        format=fmt,  # type: ignore[arg-type]
        program=program,
        totals=totals,
        notice_line=notice in ("1", "true"),
    )


async def _export(request: web.Request, export: ExportRequest) -> web.Response:
    services = request.app[SERVICES]
    try:
        check_export(export)
    except ValueError as exc:
        return api_error(400, "invalid", str(exc))
    result = await export_attendance(
        services.attendance, services.ledger, export,
        requested_by=_by(request), channel="http", now=services.clock(),
        minimums=program_minimums(services.settings),
    )
    services.metrics.exports.labels(export.format).inc()
    return web.Response(
        text=result.body,
        content_type=result.content_type,
        headers={"X-Redisclosure-Notice": result.notice, "Cache-Control": "no-store",
                 "Content-Disposition": f'attachment; filename="{result.filename}"'},
    )


async def attendance(request: web.Request) -> web.Response:
    """Rows, one per participant per session: by date range, session or participant."""
    return await _export(request, _export_request(request))


async def attendance_totals(request: web.Request) -> web.Response:
    """Per client per day or ISO week: sessions, services, minutes, days, the minimum."""
    period = request.query.get("period", "week")
    if period not in PERIODS:
        return api_error(400, "invalid", "period must be day or week")
    return await _export(request, _export_request(request, totals=period))


async def list_disclosures_route(request: web.Request) -> web.Response:
    """Every export (who, when, filters, format, rows) in a date range; the reading is
    itself audited (server/attendance/disclosures.py says why it is not a disclosure)."""
    services = request.app[SERVICES]
    from_date, to_date = _query_date(request, "from"), _query_date(request, "to")
    if from_date is not None and to_date is not None and to_date < from_date:
        return api_error(400, "invalid", "to is before from")
    found = await list_disclosures(
        lambda: services.ledger.load(AUDIT_STREAM), services.ledger.append_audit,
        from_date, to_date, by=_by(request), channel="http", now=services.clock(),
        tz=services.settings.zone,
    )
    return web.json_response({"disclosures": [d.to_json() for d in found]},
                             headers={"Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    """For load balancers and operators: 503 when this node cannot serve sessions (its
    database or Redis is unreachable, or it is draining), saying which."""
    services = request.app[SERVICES]
    database = await services.database_ok()
    redis = await services.redis_ok()
    node = services.sessions
    healthy = database and redis is not False and node.healthy() and not node.draining
    return web.json_response(
        {"ok": healthy, "database": database, "redis": redis, "bus": node.healthy(),
         "node": node.node_id, "draining": node.draining,
         "sessions_live": len(node.live_sessions())},
        status=200 if healthy else 503,
    )


async def list_nodes(request: web.Request) -> web.Response:
    """Admin: the clinic's live nodes, the sessions each owns and their load."""
    services = request.app[SERVICES]
    nodes = await services.sessions.nodes()
    return web.json_response({"nodes": [
        {"node_id": n.node_id, "url": n.url, "draining": n.draining, "sessions": n.sessions,
         "session_ids": list(n.session_ids), "connections": n.connections,
         "load": round(n.load, 3),
         "seen_at": datetime.fromtimestamp(n.seen_at, UTC).isoformat()}
        for n in nodes
    ]})


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "scopes": sorted(key.scopes),
            "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


async def _audit_keys(request: web.Request, action: str, **details: Any) -> None:
    """Key management changes who can reach patient data, so each call is an audit event."""
    services = request.app[SERVICES]
    await services.ledger.append_audit({
        "type": action, "at": services.clock().isoformat(), "by": _by(request),
        "channel": "http", **details,
    })


async def list_keys(request: web.Request) -> web.Response:
    """Admin: every key, revoked ones included (never a secret or its hash)."""
    keys = await request.app[SERVICES].api_keys.list()
    await _audit_keys(request, "api_keys_listed", keys=len(keys))
    return web.json_response({"keys": [_key_json(k) for k in keys]})


async def create_key(request: web.Request) -> web.Response:
    """Admin: issue a key; its secret is in this response only."""
    body: KeyCreate = await parse_body(request, KeyCreate)
    try:
        secret, key = await request.app[SERVICES].api_keys.create(body.scopes, body.name)
    except ValueError as exc:
        return api_error(400, "invalid", str(exc))
    # Audited before the secret leaves: an unrecorded key is one nobody was ever handed.
    await _audit_keys(request, "api_key_created", key_id=key.id, scopes=sorted(key.scopes))
    return web.json_response({**_key_json(key), "secret": secret}, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    """Admin: revoke a key at once (it may be the caller's own)."""
    key_id = request.match_info["key_id"]
    if not await request.app[SERVICES].api_keys.revoke(key_id):
        return api_error(404, "not_found", "no active API key with this id")
    await _audit_keys(request, "api_key_revoked", key_id=key_id)
    return web.json_response({"revoked": True})


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.metrics.live_sessions.set(len(services.sessions.live_sessions()))
    services.metrics.connections.set(services.gateway.connection_count())
    return web.Response(body=services.metrics.render(),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


API_ROUTES: tuple[tuple[str, str, tuple[Scope, ...], Handler], ...] = (
    ("POST", "/api/v1/sessions", ("schedule",), create_session),
    ("GET", "/api/v1/sessions/{session_id}", ("schedule",), get_session),
    # Either scope lets a key in; the handler then asks for the invited role's own.
    ("POST", "/api/v1/sessions/{session_id}/invites", ("schedule", "therapist-invites"),
     create_invite),
    ("DELETE", "/api/v1/sessions/{session_id}/invites/{token_id}", ("schedule",),
     revoke_invite),
    ("PUT", "/api/v1/sessions/{session_id}/breakout-plan", ("schedule",), save_breakout_plan),
    ("GET", "/api/v1/attendance", ("attendance",), attendance),
    ("GET", "/api/v1/attendance/totals", ("attendance",), attendance_totals),
    ("GET", "/api/v1/disclosures", ("attendance",), list_disclosures_route),
    ("GET", "/api/v1/nodes", ("admin",), list_nodes),
    ("GET", "/api/v1/keys", ("admin",), list_keys),
    ("POST", "/api/v1/keys", ("admin",), create_key),
    ("DELETE", "/api/v1/keys/{key_id}", ("admin",), revoke_key),
)
"""Every /api/ route with the scopes that admit a key to it, checked before the handler
(and so before the body is read or the session looked up)."""

_AUDITED_READS: frozenset[Handler] = frozenset({get_session})
"""Reads of a session that append nothing themselves (attendance and disclosures do, as
exports). The node list is not one: it holds no patient data, and monitoring polls it."""


async def _audit_call(request: web.Request, action: str, status: int) -> None:
    """One audit event for a call that leaves no other trace naming its key."""
    route = request.match_info.route.resource
    await _audit_keys(request, action, method=request.method, status=status,
                      route=route.canonical if route is not None else request.path,
                      session_id=request.match_info.get("session_id"))


def _scoped(scopes: tuple[Scope, ...], handler: Handler) -> Handler:
    """The route's scope check, and the audit of calls nothing else records: a refusal
    (a key trying what it may not is what a security review looks for) and the reads in
    `_AUDITED_READS`. Changes are in the ledger under the key's id, exports and key
    management in the audit stream already."""
    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            _require(request, *scopes)
            response = await handler(request)
        except ApiError as exc:
            if exc.status == 403:
                await _audit_call(request, "api_call_refused", exc.status)
            raise
        if handler in _AUDITED_READS and response.status == 200:  # a 404 disclosed nothing
            await _audit_call(request, "api_read", response.status)
        return response

    return checked


def setup_routes(app: web.Application) -> None:
    for method, path, scopes, handler in API_ROUTES:
        app.router.add_route(method, path, _scoped(scopes, handler))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
