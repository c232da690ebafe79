"""The control plane's I/O edge: session owners (runtime), the Socket.IO adapter (gateway),
delivery to connections (fanout) and media coordination (media)."""
