"""Scale: how many executors, each at 5,000 requests/s, one coordinator core follows live.

Synthetic executors are real processes (scale_executors.py, each replaying one executor's
stream as many executors) pushing real encoded messages over a real ipc:// PUSH/PULL socket to
the coordinator's real receiver (AggregatorServer: receive, route, aggregate, a snapshot every
second). Coordinator CPU is this process's CPU time (the ingest thread, libzmq's I/O thread and
the snapshots), so "per core" is exactly what one coordinator process would spend.

Figures, per mode (raw: every row and token gap travels; histograms: summaries):
- `*_cpu_us_per_executor_s`: coordinator CPU per executor-second (one executor's second of
  5,000 requests x 16 tokens), from a flood of such messages (measured);
- `*_live_executors`, `*_live_cpu_share`: a paced fleet (one message per executor per second,
  as executors send) of that many executors for LIVE_SECONDS seconds, and the coordinator's
  CPU per second of that stream, as a share of one core (measured); `*_live_backlog_ms`: how long after the last message
  it was ingested (0-ish: it kept up);
- `*_executors_per_core`: live executors / CPU share, i.e. what one fully used core follows
  (extrapolated linearly from the live run; the flood figure gives the same within noise);
- `snapshot_*_ms_<N>_executors`: wall and CPU time of the snapshots taken during the live run,
  mean and max (measured, with N executors present);
- `*_executor_histograms_mb_<N>_executors`: memory the coordinator's per-executor histograms
  hold after the live run (dense in raw mode, sparse in histogram mode);
- `*_message_kb_per_executor_s`: bytes on the wire per executor-second;
- `executor_histogram_mode_cpu_ms_per_s`: what an executor spends per second of its stream to
  summarise it and keep its rows in the node file, beside `executor_raw_encode_cpu_ms_per_s`.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support on a plain run

from hpcbench.coordinator.ingest.aggregator import Aggregator  # noqa: E402
from hpcbench.coordinator.ingest.receiver import AggregatorServer  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

HERE = Path(__file__).resolve().parent
GENERATORS = 2                       # sender processes (the machine's cores are shared)
LIVE = {"raw": 24, "histograms": 1_000}   # executors in the paced live runs
LIVE_SECONDS = 6
TARGETS = {"histograms_executors_per_core": (">=", 1_000)}


def _drive(mode: str, executors: int, seconds: int, paced: bool) -> dict:
    """Run generators against a fresh receiver; coordinator CPU, wall time and snapshots."""
    aggregator = Aggregator(run_id="run-1")
    aggregator.open_trial("t1", slos_s={"ttft": 0.5, "tpot": 0.05})
    snapshots: list[tuple[float, float]] = []
    take_snapshot = aggregator.snapshot

    def timed_snapshot() -> dict:
        wall, cpu = time.perf_counter(), time.thread_time()
        report = take_snapshot()
        snapshots.append((time.perf_counter() - wall, time.thread_time() - cpu))
        return report

    aggregator.snapshot = timed_snapshot
    server = AggregatorServer(aggregator, f"ipc://{tempfile.mkdtemp(prefix='bench-scale-')}/s")
    endpoint = server.start()
    share = -(-executors // GENERATORS)
    expected = executors * seconds
    generators = [subprocess.Popen(
        [sys.executable, str(HERE / "scale_executors.py"), endpoint, mode, str(first),
         str(min(share, executors - first)), str(seconds), "1" if paced else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for first in range(0, executors, share)]
    for generator in generators:        # each has built its message and connected
        assert generator.stdout.readline().strip() == "ready"
    cpu = time.process_time()
    for generator in generators:
        generator.stdin.write("go\n")
        generator.stdin.flush()
    for generator in generators:
        generator.communicate(timeout=300)
    sent_at = time.perf_counter()
    # the receiver thread advances the counter; the time it takes is the backlog
    wait_until(lambda: aggregator.batches >= expected, timeout=60, interval=0.001,
               what=f"the aggregator to take all {expected} messages")
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    server.stop()
    assert aggregator.batches == expected, (aggregator.batches, expected)
    return {"cpu_s": cpu, "messages": expected, "histogram_mb": _executor_histogram_mb(aggregator),
            "backlog_ms": (done - sent_at) * 1000, "snapshots": snapshots}


def _executor_histogram_mb(aggregator: Aggregator) -> float:
    """Bytes of bucket counts the aggregator holds for its executors' scopes (MB)."""
    held = 0
    for trial in aggregator._trials.values():
        for scope in trial.executors.values():
            for metric_set in (scope.interval, scope.cumulative):
                for histogram in metric_set.histograms.values():
                    held += (histogram.counts.nbytes if hasattr(histogram, "counts")
                             else sum(array.nbytes for array in histogram.filled()))
    return held / 2**20


def _edge_costs() -> dict:
    """An executor's own CPU per second of its stream: raw encoding vs summary + raw file."""
    from scale_executors import REQUESTS_PER_S, SLOS_NS, TOKENS

    from hpcbench.executor.node_samples import NodeSamples
    from hpcbench.proto import samples
    from tests.support.sample_batches import make_batch

    batch = make_batch(0, REQUESTS_PER_S, run="run-1", chunks=TOKENS,
                       spacing_ns=1_000_000_000 // REQUESTS_PER_S)
    repeats = 20
    started = time.process_time()
    for _ in range(repeats):
        samples.encode(batch)
    raw = (time.process_time() - started) / repeats
    with tempfile.TemporaryDirectory() as folder:
        node = NodeSamples(Path(folder) / "exec-0.msgpack",
                           {name: value / 1e9 for name, value in SLOS_NS.items()})
        started = time.process_time()
        for _ in range(repeats):
            node.encode(batch)
        summarised = (time.process_time() - started) / repeats
        node.close()
    return {"executor_raw_encode_cpu_ms_per_s": round(raw * 1000, 2),
            "executor_histogram_mode_cpu_ms_per_s": round(summarised * 1000, 2)}


def run() -> dict:
    sys.path.insert(0, str(HERE))
    from scale_executors import one_second

    figures = {}
    for mode, flood in (("raw", 16), ("histograms", 1_000)):
        figures[f"{mode}_message_kb_per_executor_s"] = round(
            len(msgpack.packb(one_second(mode), use_bin_type=True)) / 1024, 1)
        burst = _drive(mode, flood, 4, paced=False)
        figures[f"{mode}_cpu_us_per_executor_s"] = round(burst["cpu_s"] / burst["messages"]
                                                         * 1e6, 1)
        live = _drive(mode, LIVE[mode], LIVE_SECONDS, paced=True)
        used = live["cpu_s"] / LIVE_SECONDS    # CPU per second of the fleet's stream
        figures[f"{mode}_live_executors"] = LIVE[mode]
        figures[f"{mode}_live_cpu_share"] = round(used, 3)
        figures[f"{mode}_live_backlog_ms"] = round(live["backlog_ms"], 1)
        figures[f"{mode}_executors_per_core"] = round(LIVE[mode] / used)
        figures[f"{mode}_executors_per_core_from_flood"] = round(
            1e6 / figures[f"{mode}_cpu_us_per_executor_s"])
        walls = [wall * 1000 for wall, _ in live["snapshots"]] or [0.0]
        cpus = [cpu * 1000 for _, cpu in live["snapshots"]] or [0.0]
        suffix = f"{LIVE[mode]}_executors"
        figures[f"{mode}_executor_histograms_mb_{suffix}"] = round(live["histogram_mb"], 1)
        figures[f"snapshot_wall_ms_{suffix}"] = round(sum(walls) / len(walls), 2)
        figures[f"snapshot_wall_ms_max_{suffix}"] = round(max(walls), 2)
        figures[f"snapshot_cpu_ms_{suffix}"] = round(sum(cpus) / len(cpus), 2)
    figures.update(_edge_costs())
    return figures


if __name__ == "__main__":
    print(run())
