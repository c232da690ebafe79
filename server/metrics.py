"""Prometheus metrics, one registry per app so tests can run several servers in a process.

Labels never carry ids or names: counts by event name and outcome only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.media.report import WorkerReport


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

    def watch_media(self, reports: Callable[[], list[WorkerReport]]) -> None:
        """Per media worker figures, read at each scrape (worker label: index or inproc)."""
        self.registry.register(_MediaCollector(reports))

    def event_handled(self, event: str, outcome: str) -> None:
        self.events.labels(event, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MediaCollector(Collector):
    def __init__(self, reports: Callable[[], list[WorkerReport]]) -> None:
        self._reports = reports

    def collect(self) -> Iterator[Metric]:
        label = ["worker"]
        info = GaugeMetricFamily("circle_media_worker_info", "The worker's process id",
                                 labels=["worker", "pid"])
        up = GaugeMetricFamily("circle_media_worker_up", "1 while the worker runs", labels=label)
        sessions = GaugeMetricFamily("circle_media_worker_sessions",
                                     "Sessions pinned to the worker", labels=label)
        peers = GaugeMetricFamily("circle_media_worker_peers", "Peer connections",
                                  labels=label)
        forwarded = CounterMetricFamily("circle_media_worker_forwarded_packets",
                                        "RTP packets forwarded to subscribers", labels=label)
        dropped = CounterMetricFamily(
            "circle_media_worker_dropped_packets",
            "RTP packets not forwarded (not granted, or subscriber transport gone)",
            labels=label)
        lag = GaugeMetricFamily("circle_media_worker_loop_lag_seconds",
                                "Worst event-loop wake-up delay over the last second",
                                labels=label)
        restarts = CounterMetricFamily("circle_media_worker_restarts",
                                       "Times the worker was restarted after it died",
                                       labels=label)
        for r in self._reports():
            info.add_metric([r.worker, str(r.pid or "")], 1.0)
            up.add_metric([r.worker], 1.0 if r.up else 0.0)
            sessions.add_metric([r.worker], r.sessions)
            peers.add_metric([r.worker], r.peers)
            forwarded.add_metric([r.worker], r.forwarded_packets)
            dropped.add_metric([r.worker], r.dropped_packets)
            lag.add_metric([r.worker], r.loop_lag_ms / 1000)
            restarts.add_metric([r.worker], r.restarts)
        yield from (info, up, sessions, peers, forwarded, dropped, lag, restarts)


__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]
