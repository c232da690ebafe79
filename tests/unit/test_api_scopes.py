"""API key scopes: what roles stand for, what each scope allows, which routes need which."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest
from aiohttp import web

from server.apikeys import ROLE_SCOPES, SCOPES, ApiKey, Scope, invite_scope, scopes_of
from server.http_api import API_ROUTES, setup_routes
from signaling.core.model import Role as ParticipantRole


def key(*scopes: Scope) -> ApiKey:
    return ApiKey("k1", "tests", frozenset(scopes), datetime(2026, 1, 1, tzinfo=UTC), None)


def test_roles_are_shorthands_for_scopes() -> None:
    assert scopes_of("staff") == {"schedule", "therapist-invites", "attendance"}
    assert scopes_of("admin") == {"admin"}
    assert key(*scopes_of("staff")).role == "staff"
    assert key("admin").role == "admin"
    assert key("schedule", "attendance").role is None, "a custom set is no role"


def test_scopes_are_checked_and_admin_absorbs_the_rest() -> None:
    assert scopes_of(["schedule", "schedule"]) == {"schedule"}
    assert scopes_of(["admin", "schedule"]) == {"admin"}, "admin already grants schedule"
    with pytest.raises(ValueError, match="unknown scope"):
        scopes_of(["schedule", "billing"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one scope"):
        scopes_of([])
    with pytest.raises(ValueError, match="role must be one of"):
        scopes_of("root")  # type: ignore[arg-type]


def test_a_key_allows_its_scopes_and_admin_allows_all() -> None:
    staff = key(*ROLE_SCOPES["staff"])
    assert [s for s in SCOPES if staff.allows(s)] == ["schedule", "therapist-invites",
                                                     "attendance"]
    assert all(key("admin").allows(s) for s in SCOPES)
    assert [s for s in SCOPES if key("attendance").allows(s)] == ["attendance"]


def test_only_client_and_family_invites_are_schedule_work() -> None:
    assert invite_scope("client") == "schedule"
    assert invite_scope("family") == "schedule", "a relative waits to be admitted, like a client"
    clinician_roles = [r for r in get_args(ParticipantRole) if r not in ("client", "family")]
    assert set(clinician_roles) >= {"therapist", "co_therapist"}
    assert {invite_scope(r) for r in clinician_roles} == {"therapist-invites"}
    # A role nobody has classified yet is a clinician's until decided otherwise.
    assert invite_scope("supervisor") == "therapist-invites"  # type: ignore[arg-type]


def test_every_api_route_is_registered_with_its_scopes() -> None:
    """A route added to setup_routes without API_ROUTES would skip the scope check."""
    app = web.Application()
    setup_routes(app)
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    assert registered == {(method, path) for method, path, _, _ in API_ROUTES}
    assert all(scopes for _, _, scopes, _ in API_ROUTES)
    by_route = {(m, p): s for m, p, s, _ in API_ROUTES}
    assert by_route["GET", "/api/v1/nodes"] == ("admin",)
    assert {by_route[m, p] for m, p in by_route if p.startswith("/api/v1/keys")} == {("admin",)}
    for records in ("/api/v1/attendance", "/api/v1/attendance/totals", "/api/v1/disclosures"):
        assert by_route["GET", records] == ("attendance",), records
