"""Local TCP ports for servers the project starts itself (the demo's API, load-test servers)."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now. Another process may take it before the caller
    binds it; callers that can should bind port 0 themselves instead."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
