"""A single re-settable wake-up call at an absolute `time.perf_counter()` time.

Why not `loop.call_later`: uvloop's timers count whole milliseconds from a millisecond clock, so a
1 ms inter-token gap would come out anywhere between ~0 and 2 ms. On Linux a timerfd set to an
absolute CLOCK_MONOTONIC deadline (the clock behind perf_counter) wakes the event loop within
microseconds, never early, without busy-polling. Elsewhere the loop timer is used.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from typing import Callable

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFdAlarm:
    """Linux timerfd registered as a reader on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._spec = _Itimerspec()
        self._callback = callback
        self._loop = loop
        loop.add_reader(self._fd, self._fired)

    def set(self, when: float) -> None:
        if self._fd is None:   # closed while the server shuts down
            return
        seconds = int(when)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = max(1, int((when - seconds) * 1e9))  # 0 would disarm
        self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:   # re-set after expiring, before we read: nothing to do yet
            return
        self._callback()

    def close(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


class LoopAlarm:
    """Portable fallback on the event loop's own (coarser) timers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop, self._callback = loop, callback
        self._handle: asyncio.TimerHandle | None = None

    def set(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(when - time.perf_counter(), self._callback)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def make_alarm(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]):
    """The most precise alarm this platform offers."""
    if sys.platform.startswith("linux"):
        try:
            return TimerFdAlarm(loop, callback)
        except (OSError, AttributeError):
            pass
    return LoopAlarm(loop, callback)
