"""Prometheus metrics, one registry per app so tests can run several servers in a process.

Labels never carry ids or names: counts by event name and outcome only.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "circle_socket_events", "Client events handled, by event and outcome",
            ["event", "outcome"], registry=self.registry,
        )
        self.http = Counter(
            "circle_http_requests", "HTTP requests, by route and status",
            ["route", "status"], registry=self.registry,
        )
        self.connections = Gauge(
            "circle_connections", "Open participant connections", registry=self.registry
        )
        self.live_sessions = Gauge(
            "circle_live_sessions", "Sessions with a live owner in this process",
            registry=self.registry,
        )
        self.exports = Counter(
            "circle_attendance_exports", "Attendance exports", ["format"], registry=self.registry
        )

    def event_handled(self, event: str, outcome: str) -> None:
        self.events.labels(event, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]
