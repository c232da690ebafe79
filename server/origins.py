"""Which browser origins may open a Socket.IO connection: this node's own, and the
clinic's other nodes.

A browser that falls back to another node (its node list came in `config`) connects from
the page it loaded on one node to another node: a cross-origin Socket.IO connection, which
python-engineio refuses by default. Any other origin is still refused, so a page on a
stranger's site cannot use a join link it obtained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ClinicOrigins:
    """`cors_allowed_origins` for python-socketio: a callable (origin, environ) -> bool."""

    def __init__(self) -> None:
        self.node_urls: Callable[[], list[str]] = lambda: []

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True  # not a browser (the Python client, curl): nothing to protect
        return origin.rstrip("/") in self._own(environ) | {
            url.rstrip("/") for url in self.node_urls()}

    @staticmethod
    def _own(environ: dict[str, Any]) -> set[str]:
        scheme, host = environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", "")
        own = {f"{scheme}://{host}"}
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
        forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        own.add(f"{forwarded_proto}://{forwarded_host}")
        return own
