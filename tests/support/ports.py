"""Free TCP ports on 127.0.0.1 for servers that cannot report a port they picked themselves."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out (and released); servers bind it right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
