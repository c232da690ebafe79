"""Fixtures shared by the integration tests: a real `circle serve` and its staff API."""

from .server_fixtures import api, own_server, server

__all__ = ["api", "own_server", "server"]
