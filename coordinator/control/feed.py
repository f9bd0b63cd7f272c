"""A session's live feed: the latest status and snapshot, for any number of watchers.

The session publishes into it; each gRPC Watch call reads from it at its own pace (at most
10 Hz), always getting the newest values. A slow watcher skips intermediate snapshots rather
than slowing the session, like a slow subscriber of the metrics bus.
"""
from __future__ import annotations

import threading
import time

MAX_RATE_HZ = 10.0


class SessionFeed:
    def __init__(self):
        self._changed = threading.Condition()
        self._version = 0
        self._snapshot: dict | None = None
        self._snapshot_version = 0
        self._closed = False
        self._watchers = 0

    def add_watcher(self, limit: int) -> bool:
        """Count one more watcher; False (not counted) when `limit` already watch."""
        with self._changed:
            if self._watchers >= limit:
                return False
            self._watchers += 1
            return True

    def remove_watcher(self) -> None:
        with self._changed:
            self._watchers -= 1

    def publish_snapshot(self, snapshot: dict) -> None:
        with self._changed:
            self._version += 1
            self._snapshot = snapshot
            self._snapshot_version = self._version
            self._changed.notify_all()

    def touch(self) -> None:
        """The session's status changed (phase, trial, state)."""
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._version += 1
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def latest_snapshot(self) -> dict | None:
        return self._snapshot

    def follow(self, rate_hz: float = MAX_RATE_HZ, is_active=lambda: True):
        """Yield (snapshot or None, closed) whenever something changed, at most `rate_hz` times/s.

        The snapshot is given only when it is newer than the last one yielded. Ends after the
        feed is closed (one last item with closed=True) or when `is_active()` turns false.
        """
        rate_hz = MAX_RATE_HZ if rate_hz <= 0 else min(rate_hz, MAX_RATE_HZ)
        period = 1.0 / rate_hz
        seen_version = -1
        seen_snapshot = 0
        next_allowed = 0.0
        while is_active():
            with self._changed:
                self._changed.wait_for(lambda seen=seen_version: self._version != seen or self._closed,
                                       timeout=0.5)
                if self._version == seen_version and not self._closed:
                    continue
                while (wait := next_allowed - time.monotonic()) > 0:
                    self._changed.wait(wait)  # rate limit: the newest values win
                seen_version = self._version
                snapshot = None
                if self._snapshot_version != seen_snapshot:
                    seen_snapshot = self._snapshot_version
                    snapshot = self._snapshot
                closed = self._closed
            next_allowed = time.monotonic() + period
            yield snapshot, closed
            if closed:
                return
