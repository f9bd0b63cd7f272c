"""The live panel of `hpcbench run`, for `hpcbench watch` on a terminal (also over SSH).

A session followed from outside has no Session object: `WatchedSession` gives progress.panel
what it reads, the state from Control.Status and the figures from the bus's latest snapshot,
and the panel is redrawn on every bus message (snapshots come once a second).
"""
from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console
from rich.live import Live

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.cli.progress import panel
from hpcbench.proto import bus as contract


class WatchedSession:
    """`status()` and `feed.latest_snapshot`, as progress.panel reads them."""

    def __init__(self, client):
        self.client = client
        self.feed = SimpleNamespace(latest_snapshot=None)
        self._status = client.status()

    def status(self):
        return self._status

    def observe(self, message: dict) -> None:
        if message["topic"] == contract.SNAPSHOT:
            self.feed.latest_snapshot = message["data"]
        try:
            self._status = self.client.status()
        except HpcbenchError:      # the coordinator is ending: keep the last state shown
            pass


def show_live(messages, client, console: Console) -> int:
    """Redraw the panel for each message until the session ends; the number of messages."""
    watched, received = WatchedSession(client), 0
    with Live(panel(watched), console=console, refresh_per_second=4) as display:
        for message in messages:
            received += 1
            watched.observe(message)
            display.update(panel(watched))
            if (message["topic"] == contract.EVENT and message["data"].get("event") ==
                    "session_end" and not message["replay"]):
                break
    return received
