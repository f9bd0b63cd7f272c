"""The closed loop's backoff after connection failures (executor/engine.py, issue #12).

The schedule itself (doubling, cap, jitter, reset on success), then the engine against a port
nobody listens on: a closed loop backs off and still records every attempt as one error; an
open loop is not delayed and records one error per scheduled request.
"""
from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import uvloop

from hpcbench.executor.config import LoadConfig
from hpcbench.executor.engine import BACKOFF_FIRST_S, BACKOFF_MAX_S, SlotBackoff, run_trial
from hpcbench.executor.schedules import arrival_offsets
from hpcbench.executor.sinks import MemorySink
from hpcbench.proto.samples import ErrorClass
from tests.support.executor_runs import rows


def test_the_nominal_wait_doubles_from_the_first_up_to_the_cap():
    backoff = SlotBackoff(1)
    waits = [backoff.nominal_s(n) for n in range(1, 11)]
    assert waits[0] == BACKOFF_FIRST_S
    assert all(b == min(2 * a, BACKOFF_MAX_S) for a, b in zip(waits, waits[1:]))
    assert waits[-1] == BACKOFF_MAX_S
    assert backoff.nominal_s(10_000) == BACKOFF_MAX_S      # no overflow after a long outage


def test_each_wait_is_jittered_between_half_and_all_of_its_nominal_length():
    backoff = SlotBackoff(1, seed=3)
    for failures in range(1, 200):
        wait = backoff.failed(0)
        nominal = backoff.nominal_s(failures)
        assert nominal / 2 <= wait < nominal
    capped = [backoff.failed(0) / BACKOFF_MAX_S for _ in range(500)]
    assert len(set(capped)) == 500                # jittered: slots do not retry in lockstep
    assert min(capped) < 0.55 and max(capped) > 0.95


def test_a_success_resets_the_slot_and_slots_back_off_independently():
    backoff = SlotBackoff(2, seed=1)
    for _ in range(6):
        backoff.failed(0)
    assert backoff.failed(1) < BACKOFF_FIRST_S      # slot 1's first failure
    assert backoff.failed(0) >= backoff.nominal_s(7) / 2
    backoff.succeeded(0)
    assert backoff.failed(0) < BACKOFF_FIRST_S      # starts over after a success


def test_the_schedule_is_seeded():
    assert SlotBackoff(1, seed=9).failed(0) == SlotBackoff(1, seed=9).failed(0)
    assert SlotBackoff(1, seed=9).failed(0) != SlotBackoff(1, seed=10).failed(0)


@pytest.fixture
def dead_url():
    """A loopback port that is bound but not listening: every connect is refused."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{reserved.getsockname()[1]}"


def _run(url: str, **workload):
    config = LoadConfig.from_workload(
        {"api": "openai-chat", "model": "m", "request_timeout": 2,
         "dataset": {"input_tokens": 4, "output_tokens": 4}, **workload}, url)
    sink = MemorySink()
    stats = uvloop.run(run_trial(config, sink))
    return config, stats, rows(sink.batches)


def test_a_closed_loop_backs_off_from_a_refusing_port_and_counts_every_attempt(dead_url):
    slots, window = 4, 0.4
    _, stats, table = _run(dead_url, concurrency=slots, duration=window,
                           load={"pattern": "closed"})
    assert set(table["error"].tolist()) == {ErrorClass.CONNECTION_REFUSED}, stats.errors
    assert stats.errors == {"CONNECTION_REFUSED": len(table["error"])}   # one error each
    # per slot: the first attempt, then one after each wait of at least half the nominal one
    # (5, 10, 20, ... ms); without the backoff this was thousands
    per_slot = 2 + math.ceil(math.log2(window / (BACKOFF_FIRST_S / 2)))
    assert slots < len(table["error"]) <= slots * per_slot, len(table["error"])
    assert set(table["slot"].tolist()) == set(range(slots))
    # a slot waiting past the window's end ends at the end, not before: the window is whole
    assert stats.measured_seconds == pytest.approx(window), stats.measured_seconds


def test_an_open_loop_is_not_delayed_one_error_per_scheduled_request(dead_url):
    config, stats, table = _run(dead_url, duration=0.3, load={"pattern": "constant",
                                                             "rate": 200})
    scheduled = np.concatenate(list(arrival_offsets(config.load, 0.3)))
    assert len(table["error"]) == len(scheduled) == 60
    assert set(table["error"].tolist()) == {ErrorClass.CONNECTION_REFUSED}
    assert stats.errors == {"CONNECTION_REFUSED": 60}
    # each at its own intended time: the schedule's offsets, nothing shifted
    intended = np.sort(table["intended_ns"])
    np.testing.assert_allclose((intended - intended[0]) / 1e9, scheduled - scheduled[0],
                               atol=1e-6)
