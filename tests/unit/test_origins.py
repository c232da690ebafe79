"""Socket.IO origins: a page from this node or another node of the clinic, nothing else."""

from __future__ import annotations

from server.origins import ClinicOrigins

ENVIRON = {"wsgi.url_scheme": "http", "HTTP_HOST": "10.0.0.5:8080"}


def test_own_origin_and_the_clinics_nodes_are_allowed_and_strangers_are_not() -> None:
    origins = ClinicOrigins()
    origins.node_urls = lambda: ["http://10.0.0.5:8080", "https://b.clinic.example/"]
    assert origins("http://10.0.0.5:8080", ENVIRON)
    assert origins("https://b.clinic.example", ENVIRON)
    assert not origins("https://evil.example", ENVIRON)
    assert origins(None, ENVIRON), "non-browser clients send no Origin"


def test_behind_a_proxy_the_forwarded_origin_is_this_node() -> None:
    environ = {**ENVIRON, "HTTP_X_FORWARDED_HOST": "circle.clinic.example",
               "HTTP_X_FORWARDED_PROTO": "https"}
    assert ClinicOrigins()("https://circle.clinic.example", environ)
