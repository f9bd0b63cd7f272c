"""A server that dies under a closed loop is not hammered (issue #12).

The simulator runs as its own process; the executor's engine runs in this one. Once requests
are being answered, the simulator is SIGKILLed. From then on every slot's attempt is refused (or
reset, for the requests in flight at the kill): each still counts as one error, but a slot backs
off exponentially before its next attempt, so the number of attempts over the rest of the
window is bounded by the backoff schedule instead of by how fast a CPU can be refused (27,579
refusals in 0.3 s before the backoff).
"""
from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import time

import numpy as np
import uvloop

from hpcbench.common.errors import ERROR_CODES
from hpcbench.coordinator.session.results import read_samples
from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import BACKOFF_FIRST_S, BACKOFF_MAX_S, CONNECT_FAILURES, Trial
from hpcbench.executor.sinks import MemorySink
from hpcbench.proto.samples import ErrorClass, Phase
from tests.support.executor_runs import rows
from tests.support.fault_runs import started_runs, write_recipe
from tests.support.faults import descendants, record
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until

SLOTS = 8
TRIAL_MEASURED = re.compile(r"trial 1/\d+ .* measured")


def _simulator_pid(port: str) -> int:
    """This test's simulator process (a child of pytest), found by its port file argument."""
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().split(b"\0")
        except OSError:
            continue
        if b"sim" in command and port.encode() in b" ".join(command):
            return pid
    raise AssertionError(f"no simulator process with {port} in its command line")


POLL_S = 0.01   # how often _poll looks at the engine's counters


async def _poll(condition, timeout: float, what: str) -> None:
    """Await `condition()` on the loop the engine runs on: the asyncio form of wait_until
    (the engine's counters have no event to await, so the state is looked at every POLL_S,
    up to a deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


def test_a_server_killed_under_a_closed_loop_is_backed_off_from_not_hammered(tmp_path):
    with sim_process(tmp_path, "--mode", "fixed", "--ttft-ms", "2", "--itl-ms", "1") as url:
        simulator = _simulator_pid(str(tmp_path / "sim.port"))
        config = LoadConfig.from_workload(
            {"api": "openai-chat", "model": "sim-model", "duration": 3, "concurrency": SLOTS,
             "request_timeout": 5, "load": {"pattern": "closed"},
             "dataset": {"input_tokens": 8, "output_tokens": 4, "ignore_eos": True}}, url)
        sink = MemorySink()

        async def scenario() -> int:
            trial = Trial(config, sink)
            running = asyncio.get_running_loop().create_task(trial.run(asyncio.Event()))
            await _poll(lambda: trial.stats.ok >= 50 or running.done(), 30,
                        "the simulator to answer")
            assert not running.done()
            os.kill(simulator, signal.SIGKILL)
            record("faults_injected")
            killed = time.perf_counter_ns()
            stats = await running
            assert stats.ok >= 50 and not stats.stopped
            return killed, stats

        killed_ns, stats = uvloop.run(scenario())
    table = rows(sink.batches)
    after = table["intended_ns"] >= killed_ns
    errors = table["error"][after]
    failed = np.isin(errors, [int(error) for error in CONNECT_FAILURES])
    assert failed.all(), np.unique(errors)          # nothing after the kill was answered
    refused = int((errors == ErrorClass.CONNECTION_REFUSED).sum())
    assert refused > SLOTS, refused                  # the slots kept trying: the server may return
    # every attempt is one row and one error in the executor's own counts: none hidden
    measured = table["phase"] == Phase.MEASURED
    assert stats.errors.get("CONNECTION_REFUSED", 0) == int(
        (table["error"][measured] == ErrorClass.CONNECTION_REFUSED).sum())
    # the bound: per slot, attempts come after 1/2, 1, 2, ... x BACKOFF_FIRST_S (equal jitter:
    # at least half the nominal delay), doubling up to BACKOFF_MAX_S, then one every
    # BACKOFF_MAX_S / 2 at most; +2 for the request in flight at the kill and the one cut by
    # the end of the window
    window_s = (table["intended_ns"].max() - killed_ns) / 1e9
    doubling = math.ceil(math.log2(BACKOFF_MAX_S / BACKOFF_FIRST_S)) + 1
    per_slot = 2 + doubling + math.ceil(window_s / (BACKOFF_MAX_S / 2))
    assert len(errors) <= SLOTS * per_slot, (len(errors), SLOTS * per_slot)
    slots = table["slot"][after]
    assert set(slots.tolist()) == set(range(SLOTS))   # every slot went on trying


def test_a_session_whose_simulator_dies_ends_with_E001_without_flooding_it(tmp_path):
    """The same in a session, as the issue saw it (27,579 refusals in 0.3 s before E001): the
    simulator (two workers) is SIGKILLed mid-trial; its workers go with it, the session notices
    the service's exit and fails with E001, and what the executor tried in between is bounded
    by the backoff. Every request it recorded is on disk (in the trial's partial samples)."""
    recipe = write_recipe(tmp_path, duration="60s", concurrency=(SLOTS,),
                          servers={"service_config": {"workers": 2}})
    with started_runs() as runs:
        run = runs(recipe, tmp_path / "results", "dead", "--executors", "1")
        wait_until(lambda: TRIAL_MEASURED.search(run.output) or run.process.poll() is not None,
                   timeout=90, what="the trial's measured window")
        assert run.process.poll() is None, run.output
        simulator = run.component_pid("--workers 2")
        assert simulator, run.output
        os.kill(simulator, signal.SIGKILL)
        record("faults_injected")
        assert run.wait(90) == ERROR_CODES["E001"][1], run.output
    assert "error E001: service exited with status" in run.output
    trial = run.results / "faults" / "dead" / f"concurrency-{SLOTS}"
    batches = list(read_samples(trial / "samples.msgpack.partial"))
    table = rows(batches)
    failed = np.isin(table["error"], [int(error) for error in CONNECT_FAILURES])
    assert failed.any() and (~failed).any()         # answered, then refused or reset
    first_failure = table["intended_ns"][failed].min()
    window_s = (table["intended_ns"].max() - first_failure) / 1e9
    doubling = math.ceil(math.log2(BACKOFF_MAX_S / BACKOFF_FIRST_S)) + 1
    per_slot = 2 + doubling + math.ceil(window_s / (BACKOFF_MAX_S / 2))
    assert int(failed.sum()) <= SLOTS * per_slot, (int(failed.sum()), window_s)
