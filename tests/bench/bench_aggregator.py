"""Aggregator figures: ingest rate on one core, cost of a snapshot, memory over 10 M samples.

Batches look like a busy executor's: 1,000 finished requests of 16-token streams per batch, so
each batch carries 1,000 request rows and 15,000 ITL gaps (both count as samples); a second
figure uses 50-request batches to show the fixed cost per batch. Ingest is
timed from wire bytes (msgpack decode included) and measured in process CPU time, i.e. one core.
"""
import dataclasses
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support on a plain run

from hpcbench.coordinator.ingest.aggregator import Aggregator  # noqa: E402
from hpcbench.proto.samples import encode  # noqa: E402
from tests.support.sample_batches import make_batch  # noqa: E402

TARGETS = {
    "ingest_samples_per_cpu_s": (">=", 5_000_000),
    "snapshot_cpu_ms": ("<=", 1.0),
    "rss_growth_mb_over_10M_samples": ("<=", 20.0),
}
ROWS, TOKENS = 1_000, 16


def ingest_rate(rows: int = ROWS, batches: int = 200) -> dict:
    payloads = [encode(make_batch(seq // 4, rows, chunks=TOKENS, executor=f"exec-{seq % 4}",
                                  seed=seq)) for seq in range(batches)]
    aggregator = Aggregator(run_id="run-1")
    aggregator.open_trial("t1", slos_s={"ttft": 0.5, "tpot": 0.05})
    cpu, wall = time.process_time(), time.perf_counter()
    for payload in payloads:
        aggregator.ingest(payload)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    samples = aggregator.samples
    assert samples == len(payloads) * rows * TOKENS
    return {"ingest_samples_per_cpu_s": round(samples / cpu),
            "ingest_samples_per_wall_s": round(samples / wall),
            "ingest_cpu_us_per_batch": round(cpu / len(payloads) * 1e6, 1)}


def snapshot_cost(executors: int, repeats: int = 50) -> tuple[float, float]:
    """Mean (CPU ms, wall ms) of one snapshot after an interval with `executors` executors'
    batches. CPU time is the cost; wall time also shows waits for a shared core."""
    batches = [make_batch(0, ROWS, chunks=TOKENS, executor=f"exec-{e}", seed=e)
               for e in range(executors)]
    aggregator = Aggregator(run_id="run-1")
    aggregator.open_trial("t1", slos_s={"ttft": 0.5})
    cpu = wall = 0.0
    for seq in range(repeats):
        for batch in batches:
            aggregator.ingest(dataclasses.replace(batch, seq=seq))
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        aggregator.snapshot()
        cpu += time.process_time() - cpu_started
        wall += time.perf_counter() - wall_started
    return round(cpu / repeats * 1000, 3), round(wall / repeats * 1000, 3)


def receive_cost(batches: int = 400) -> dict:
    """CPU of the coordinator's side of the sample socket per MB received, over an ipc:// file
    (one machine) and over tcp with CURVE (across machines: authenticated and decrypted by
    libzmq/libsodium), the sender being another process."""
    import subprocess
    import tempfile

    import zmq

    from hpcbench.common import sockets
    from hpcbench.common.curve import create_keys

    keys_dir = tempfile.mkdtemp(prefix="bench-keys-")
    keys = create_keys(Path(keys_dir))
    figures = {}
    for mode in ("ipc", "curve"):
        endpoint = (f"ipc://{tempfile.mkdtemp(prefix='bench-')}/samples" if mode == "ipc"
                    else "tcp://127.0.0.1:0")
        pull, bound = sockets.bind(zmq.PULL, endpoint, hwm=1000,
                                   curve=keys if mode == "curve" else None)
        sender = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
            "sample_sender.py")), bound, str(batches), *([keys_dir] if mode == "curve" else [])])
        received = size = 0
        cpu = time.process_time()
        while received < batches:
            size += len(pull.recv())
            received += 1
        cpu = time.process_time() - cpu
        sender.wait(timeout=60)
        pull.close(0)
        figures[f"receive_cpu_ms_per_mb_{mode}"] = round(cpu * 1000 / (size / 2**20), 3)
    return figures


def memory_over_ten_million() -> dict:
    batch = make_batch(0, ROWS, chunks=TOKENS)
    aggregator = Aggregator(run_id="run-1")
    aggregator.open_trial("t1")
    process = psutil.Process()
    rss_at_1m = None
    seq = 0
    while aggregator.samples < 10_000_000:
        aggregator.ingest(dataclasses.replace(batch, seq=seq))
        seq += 1
        if seq % 60 == 0:  # a snapshot per ~1 M samples, as a busy second would have
            aggregator.snapshot()
        if rss_at_1m is None and aggregator.samples >= 1_000_000:
            rss_at_1m = process.memory_info().rss
    growth = (process.memory_info().rss - rss_at_1m) / 2**20
    return {"rss_growth_mb_over_10M_samples": round(growth, 1),
            "rss_mb_after_10M_samples": round(process.memory_info().rss / 2**20, 1)}


def run() -> dict:
    figures = ingest_rate()
    small = ingest_rate(rows=50, batches=800)  # executors that send often: per-batch overhead
    figures["ingest_samples_per_cpu_s_50_row_batches"] = small["ingest_samples_per_cpu_s"]
    figures["ingest_cpu_us_per_50_row_batch"] = small["ingest_cpu_us_per_batch"]
    figures["snapshot_cpu_ms"], figures["snapshot_wall_ms"] = snapshot_cost(executors=1)
    figures["snapshot_cpu_ms_8_executors"], figures["snapshot_wall_ms_8_executors"] = \
        snapshot_cost(executors=8)
    figures.update(receive_cost())
    figures.update(memory_over_ten_million())
    return figures


if __name__ == "__main__":
    print(run())
