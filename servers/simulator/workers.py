"""`hpcbench sim --workers N`: N simulator processes behind one port, for more than one core.

One process serves roughly 3,000 16-token streams per CPU-second (docs/simulator.md); a client
benchmark that needs more load runs several. Each worker is an independent replica (its own
batch, queue and timing) listening on the same port with SO_REUSEPORT, so the kernel spreads
connections over them. Their statistics are summed through shared memory (shared_stats.py), so
/metrics and /sim/stats on any connection report all workers; ground truth goes to one JSONL
file written in whole lines. The parent holds the port until every worker listens, then writes
the port file, and on SIGTERM/SIGINT stops the workers (they flush their truth first).

Workers die with the parent even when it is SIGKILLed: each asks the kernel for SIGTERM at its
parent's death first thing, and exits at once if the parent died before that was armed
(`common.process_group.die_with_parent`). Nothing else is started: the events are fork-context
semaphores without names and the statistics table an anonymous mapping, so no multiprocessing
resource tracker runs to outlive the workers.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import uvloop

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.process_group import die_with_parent
from hpcbench.servers.simulator.config import SimulatorConfig
from hpcbench.servers.simulator.server import announce, listen_error, run_until_signalled
from hpcbench.servers.simulator.shared_stats import SharedStatsTable
from hpcbench.servers.simulator.truth import TruthLog

START_TIMEOUT_S = 60


def serve_workers(config: SimulatorConfig, port_file: str | None, truth_file: str | None,
                  workers: int) -> None:
    context = multiprocessing.get_context("fork")   # workers inherit the shared table
    table = SharedStatsTable(workers, config.model)
    processes: list[multiprocessing.Process] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as placeholder:
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                placeholder.bind((config.host, config.port))
            except OSError as error:
                raise listen_error(config, error) from None
            config = replace(config, port=placeholder.getsockname()[1])
            if truth_file:
                Path(truth_file).write_text("")   # truncated once; workers append whole lines
            listening = [context.Event() for _ in range(workers)]
            processes = [context.Process(target=_worker, name=f"hpcbench-sim-{index}",
                                         args=(config, truth_file, table, index, listening[index],
                                               os.getpid()))
                         for index in range(workers)]
            for process in processes:
                process.start()
            _wait_until_listening(processes, listening)
        announce(config, config.port, port_file, workers)
        _wait_for_signal_or_failure(processes)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        table.close()
    failed = [p for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise HpcbenchError("E001", f"simulator worker {failed[0].name} exited with code "
                                    f"{failed[0].exitcode}", ("see its error above",))


def _worker(config: SimulatorConfig, truth_file: str | None, table: SharedStatsTable,
            index: int, listening, parent_pid: int) -> None:
    if not die_with_parent(parent_pid):     # SIGTERM: the worker flushes its truth, then exits
        sys.exit(f"hpcbench sim worker {index}: parent {parent_pid} is gone; not serving")
    truth = TruthLog(keep=False, path=truth_file, truncate=False) if truth_file else None
    uvloop.run(run_until_signalled(config, truth, lambda port: listening.set(),
                                   shared=table, worker=index))


def _wait_until_listening(processes, listening) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pause = threading.Event()
    while not all(event.is_set() for event in listening):
        dead = [p for p in processes if not p.is_alive()]
        if dead or time.monotonic() > deadline:
            which = dead[0].name if dead else "a worker"
            raise HpcbenchError("E001", f"simulator {which} did not start listening",
                                ("see its error above",))
        pause.wait(0.05)


def _wait_for_signal_or_failure(processes) -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.2):
        if any(not process.is_alive() for process in processes):
            return
