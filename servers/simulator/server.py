"""Running a simulator: in-process on a background thread (`start_simulator`) for tests and
tools, or in the foreground as a process (`serve`, used by `hpcbench sim`).

Both run one uvloop event loop with the raw HTTP protocol of `http.py` on `transport.py`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, TypeVar

import uvloop

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.files import write_atomic
from hpcbench.common.stamped_socket import hold_kernel_stamps
from hpcbench.servers.simulator.app import SimulatorApp
from hpcbench.servers.simulator.config import SimulatorConfig
from hpcbench.servers.simulator.http import HttpConnection
from hpcbench.servers.simulator.shared_stats import SharedStatsTable
from hpcbench.servers.simulator.transport import StampingServer, listening_socket
from hpcbench.servers.simulator.truth import TruthLog, dump_jsonl

log = logging.getLogger(__name__)

T = TypeVar("T")


def listen_error(config: SimulatorConfig, error: OSError) -> HpcbenchError:
    return HpcbenchError("E008", f"simulator cannot listen on {config.host}:{config.port} "
                                 f"({error.strerror or error})",
                         ("choose another --port, or --port 0 for a free one",))


class Listener:
    """The listening socket, the app behind it and the open connections (to close on stop)."""

    def __init__(self, app: SimulatorApp) -> None:
        self.app = app
        self.connections: set[HttpConnection] = set()
        self.server: StampingServer | None = None

    def _connection(self) -> HttpConnection:
        return HttpConnection(self.app.route, self.connections)

    async def open(self, reuse_port: bool = False) -> int:
        """Listen; with ground truth on, requests carry the kernel's receive stamps."""
        config = self.app.config
        try:
            sock = listening_socket(config.host, config.port, reuse_port,
                                    timestamps=config.record_truth)
        except OSError as error:
            raise listen_error(config, error) from None
        # wait until the kernel stamps: the listening socket's option keeps it on from then
        holder = hold_kernel_stamps() if config.record_truth else None
        if holder is not None:
            holder.close()
        elif config.record_truth:
            log.warning("the kernel does not stamp received packets here; ground truth stamps a "
                        "request's arrival when the simulator reads it")
        self.server = StampingServer(asyncio.get_running_loop(), sock, self._connection)
        return self.server.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.app.engine.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()


class SimulatorHandle:
    """A simulator running on a background thread; `stop()` (or `with`) ends it."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.port = 0
        self.truth_log = TruthLog(keep=True) if config.record_truth else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hpcbench-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    def _run(self) -> None:
        loop = self._loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            async def open_listener() -> int:
                self._listener = Listener(SimulatorApp(self.config, self.truth_log))
                return await self._listener.open()
            self.port = loop.run_until_complete(open_listener())
        except BaseException as error:  # reported to the starting thread, then re-raised there
            self._failure = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._listener.close()
            loop.run_until_complete(asyncio.sleep(0))   # let aborted transports finish closing
            loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def truth(self) -> list[dict]:
        """Ground-truth records so far (needs `record_truth=True`), including that of every
        request whose last byte a client has already read."""
        if self.truth_log is None:
            raise ValueError("ground truth is off: start the simulator with record_truth=True")
        return self.on_loop(lambda: list(self.truth_log.records))

    @property
    def served(self) -> int:
        """Generation requests answered completely so far."""
        return self._listener.app.stats.served

    def stats(self) -> dict:
        """A snapshot of the server's counters (served, running, waiting, faults, ...)."""
        return self.on_loop(self._listener.app.stats.snapshot)

    def on_loop(self, function: Callable[[], T]) -> T:
        """`function()` run on the simulator's own thread between two of its callbacks, so it
        sees no request half-way through a step. That matters because a socket send releases
        the GIL: a client thread can read a response's last byte while the simulator thread
        is still finishing that request's bookkeeping (its truth record, its objects)."""
        if not self._thread.is_alive():
            return function()
        result: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(function())
            except BaseException as error:   # raised again in the calling thread
                result.set_exception(error)
        self._loop.call_soon_threadsafe(call)
        return result.result(timeout=30)

    def dump_truth(self, path: str | Path) -> None:
        dump_jsonl(list(self.truth), path)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def __enter__(self) -> "SimulatorHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_simulator(config: SimulatorConfig | None = None, **overrides) -> SimulatorHandle:
    """Start a simulator in this process; fields of `overrides` replace those of `config`."""
    config = replace(config or SimulatorConfig(), **overrides)
    return SimulatorHandle(config)


def serve(config: SimulatorConfig, port_file: str | None = None,
          truth_file: str | None = None, workers: int = 1) -> None:
    """Serve in the foreground until SIGTERM/SIGINT; the bound port goes to `port_file`
    (written atomically once listening) and ground truth to `truth_file` as JSONL. With
    `workers` > 1, that many processes share the port (see workers.py)."""
    if truth_file:
        config = replace(config, record_truth=True)
    if workers > 1:
        from hpcbench.servers.simulator.workers import serve_workers
        serve_workers(config, port_file, truth_file, workers)
        return
    truth = TruthLog(keep=False, path=truth_file) if truth_file else None
    uvloop.run(run_until_signalled(config, truth,
                                   lambda port: announce(config, port, port_file, workers=1)))


def announce(config: SimulatorConfig, port: int, port_file: str | None, workers: int) -> None:
    """Tell scripts (port file, atomically) and people (stderr) where the simulator listens."""
    if port_file:   # where this user's scripts find the simulator: private
        write_atomic(Path(port_file), f"{port}\n", mode=0o600)
    log.info("serving %s on http://%s:%s (OpenAI /v1, Ollama /api, metrics /metrics), mode %s, "
             "%d worker process(es)", config.model, config.host, port, config.mode, workers)


async def run_until_signalled(config: SimulatorConfig, truth: TruthLog | None,
                              on_listening: Callable[[int], None],
                              shared: SharedStatsTable | None = None, worker: int = 0) -> None:
    """Listen, report the port, serve until SIGTERM/SIGINT, then flush the truth and close."""
    loop = asyncio.get_running_loop()
    listener = Listener(SimulatorApp(config, truth, shared, worker))
    on_listening(await listener.open(reuse_port=shared is not None))
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if truth is not None:
                truth.flush()   # readers of the JSONL see records at most a second late
    finally:
        listener.close()
        if truth is not None:
            truth.close()
