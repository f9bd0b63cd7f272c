"""Deadline-bounded waiting for tests: poll a condition instead of sleeping a guessed time."""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not become true before the deadline."""


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Return the first truthy value of `condition()`, polling until `timeout` seconds pass."""
    pause = threading.Event()  # never set: wait() is an interruptible, bounded pause
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        pause.wait(interval)
