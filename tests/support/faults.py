"""Fault-injection helpers for the reliability suites: real sockets and processes, no mocks.

- `WireCounts`: the aggregator's reject counters, subtractable to get what one message did.
- `BadServer`: an HTTP server on 127.0.0.1 (asyncio, raw sockets, in a thread) that answers
  every request with a scripted misbehaviour: garbage, endless lines, slow drip, a stall or
  a crash mid-stream. It counts the bytes it wrote and notices when the client hangs up, so a
  test can prove the client gave up (bounded memory, no hang) rather than guess.
- `descendants(pid)`: live processes below `pid` (leftover-process checks).
- `record(figure, count)`: adds to the figures `make reliability` prints (faults injected, bad
  inputs tried, samples produced vs accounted); a no-op outside tests/reliability_report.py.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Awaitable, Callable

FIGURES_ENV = "HPCBENCH_RELIABILITY_FIGURES"


def record(figure: str, count: int = 1) -> None:
    """Append `count` to `figure` in the file tests/reliability_report.py names (if any)."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as figures:
            figures.write(json.dumps({figure: count}) + "\n")


@dataclass(frozen=True)
class WireCounts:
    """Aggregator counters (integrity) a fuzzed message may move."""

    batches: int = 0
    samples: int = 0
    malformed: int = 0
    duplicates: int = 0
    wrong_run: int = 0
    telemetry_malformed: int = 0
    telemetry: int = 0                    # well-formed telemetry, republished on the bus

    @property
    def accounted(self) -> int:
        """Messages that went somewhere: aggregated, republished or counted as rejected."""
        return (self.batches + self.malformed + self.duplicates + self.wrong_run
                + self.telemetry_malformed + self.telemetry)

    def __sub__(self, other: "WireCounts") -> "WireCounts":
        return WireCounts(*(a - b for a, b in zip(astuple(self), astuple(other))))


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
UNTIL_CLOSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


Script = Callable[["BadServer", asyncio.StreamWriter], Awaitable[None]]


class BadServer:
    """Serve `script(server, writer)` to every request; `url`, `bytes_sent`, `hung_up`."""

    def __init__(self, script: Script):
        self.script = script
        self.bytes_sent = 0
        self.requests = 0
        self.hung_up = threading.Event()      # the client closed while we were still writing
        self.release = None                   # set by close(): ends stalls
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="bad-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.release = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.requests += 1
            await self.script(self, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hung_up.set()
        finally:
            writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write and wait for the socket to take it (a client that stops reading stalls us)."""
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)

    async def stall(self) -> None:
        """Hold the connection open, silent, until the test closes the server."""
        await self.release.wait()

    def close(self) -> None:
        """End every scripted answer (stalls, drips), stop listening, stop the thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self.release.set()
        self._server.close()
        answers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in answers:
            task.cancel()
        await asyncio.gather(*answers, return_exceptions=True)

    def __enter__(self) -> "BadServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def descendants(pid: int) -> list[int]:
    """Live (not zombie) processes whose ancestry includes `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.path.exists(f"/proc/{pid}")
