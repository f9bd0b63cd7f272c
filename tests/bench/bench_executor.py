"""Executor figures (`make bench`): CPU cost per request, client-added latency against the
simulator's ground truth, schedule accuracy, memory growth, and the HTTP-client comparison.

The simulator runs as a separate process (`hpcbench sim`, fixed timing), so the CPU time read
with getrusage(RUSAGE_SELF) in this process is the executor's alone (its sink thread included).
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support on a plain run

from hpcbench.executor.config import LoadConfig  # noqa: E402
from hpcbench.executor.engine import client_request_id, run_trial
from hpcbench.executor.sinks import FileSink, MemorySink
from hpcbench.proto.samples import ErrorClass
from tests.support.sample_rows import measured_rows

VENV_BIN = Path(sys.executable).parent
TOKENS = 16

TARGETS = {
    "requests_per_cpu_s": (">=", 5000),
    "requests_per_cpu_s_ipc_sink": (">=", 5000),
    "requests_per_cpu_s_curve_sink": (">=", 5000),
    "client_added_ttft_p99_ms": ("<=", 0.5),
    "client_added_itl_p99_ms": ("<=", 0.5),
    "constant_2000_rate_error_pct": ("<=", 1.0),
    "poisson_2000_rate_error_pct": ("<=", 1.0),
    "rss_growth_mb_per_1m_requests": ("<=", 20.0),
}


class Simulator:
    """`hpcbench sim` as a child process, optionally writing ground truth to a JSONL file."""

    def __init__(self, *flags: str, truth: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-exec-"))
        port_file = self.dir / "port"
        self.truth_path = self.dir / "truth.jsonl" if truth else None
        command = [str(VENV_BIN / "hpcbench"), "sim", "--mode", "fixed", "--port", "0",
                   "--port-file", str(port_file), *flags]
        if truth:
            command += ["--truth", str(self.truth_path)]
        self.process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        pause = threading.Event()
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            pause.wait(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def stop(self) -> list[dict]:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.truth_path is None:
            return []
        return [json.loads(line) for line in self.truth_path.read_text().splitlines()]


def _config(url: str, **workload) -> LoadConfig:
    base = {"api": "openai-chat", "model": "sim-model", "duration": 5, "concurrency": 64,
            "dataset": {"input_tokens": 16, "output_tokens": TOKENS, "ignore_eos": True}}
    return LoadConfig.from_workload({**base, **workload}, url)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(config: LoadConfig, sink=None):
    sink = sink or MemorySink()
    cpu = _cpu()
    stats = uvloop.run(run_trial(config, sink))
    return stats, sink, _cpu() - cpu


def cpu_per_request(url: str) -> dict:
    """64 closed-loop streams of 16 tokens written 1 ms apart (the issue's comparison setup)."""
    stats, _, cpu = _run(_config(url, warmup=1))
    return {"requests_per_cpu_s": round(stats.requests / cpu),
            "closed_loop_64_req_per_s": round(stats.request_rate, 1),
            "closed_loop_errors": sum(stats.errors.values())}


def sample_stream_cost(url: str) -> dict:
    """The same load with its samples pushed to a coordinator's socket in another process, as
    a session does: over an ipc:// file (one machine, the default there) and over tcp with
    CURVE (across machines, the default there). The difference is what authenticating and
    encrypting the sample stream costs the executor."""
    from hpcbench.common.curve import create_keys
    from hpcbench.executor.sinks import ZmqSink

    figures = {}
    keys_dir = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    keys = create_keys(keys_dir)
    for mode in ("ipc", "curve"):
        receiver = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
            "sample_receiver.py")), mode, str(keys_dir)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        endpoint = receiver.stdout.readline().strip()
        sink = ZmqSink(endpoint, curve=keys if mode == "curve" else None)
        stats, _, cpu = _run(_config(url, warmup=1), sink)
        sink.close()
        receiver.stdin.close()
        received = int(receiver.stdout.readline())
        receiver.wait(timeout=30)
        figures[f"requests_per_cpu_s_{mode}_sink"] = round(stats.requests / cpu)
        figures[f"{mode}_sink_batches_received"] = received
    return figures


def aiohttp_requests_per_cpu_s(url: str, seconds: float = 5.0, slots: int = 64) -> float:
    """The same load through aiohttp (streamed SSE lines, orjson per event): the comparison
    behind the choice of HTTP client (docs/design-notes.md)."""
    import aiohttp
    import orjson

    body = {"model": "sim-model", "stream": True, "max_tokens": TOKENS, "ignore_eos": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "word " * 16}]}

    async def main() -> int:
        done = 0
        end = time.perf_counter() + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def slot():
                nonlocal done
                while time.perf_counter() < end:
                    chunks = []
                    async with session.post(url + "/v1/chat/completions", json=body) as reply:
                        async for line in reply.content:
                            if line.startswith(b"data: {"):
                                event = orjson.loads(line[6:])
                                if event["choices"]:
                                    chunks.append(time.perf_counter_ns())
                    done += 1
            await asyncio.gather(*(slot() for _ in range(slots)))
        return done

    cpu = _cpu()
    done = uvloop.run(main())
    return round(done / (_cpu() - cpu))


def client_added_latency(url: str, truth_sim: Simulator, rate: float) -> dict:
    """Poisson load at `rate` (about half of capacity); executor minus simulator truth, per
    request matched by X-Request-Id: TTFT from send, and every inter-token gap. The TTFT
    difference is split into its two legs: request (send -> server arrival) and first token
    (server write -> client read); both include the other process's CPU waits."""
    _, sink, _ = _run(_config(url, duration=4, concurrency=None,
                              load={"pattern": "poisson", "rate": rate}))
    truth = {record["client_request_id"]: record for record in truth_sim.stop()
             if record.get("outcome") == "served"}
    ttft_extra, itl_extra, request_leg, token_leg = [], [], [], []
    for batch in sink.batches:
        offsets = batch.itl_offsets()
        for row in range(batch.n):
            record = truth.get(client_request_id(batch.executor,
                                                 int(batch.columns["req_id"][row])))
            if record is None or batch.columns["error"][row] != ErrorClass.OK:
                continue
            writes = np.asarray(record["token_perf_ns"], dtype=np.int64)
            client = batch.columns["first_ns"][row] - batch.columns["send_ns"][row]
            ttft_extra.append(client - (writes[0] - record["arrival_perf_ns"]))
            request_leg.append(record["arrival_perf_ns"] - batch.columns["send_ns"][row])
            token_leg.append(batch.columns["first_ns"][row] - writes[0])
            gaps = batch.itl_ns[offsets[row]:offsets[row + 1]]
            if len(gaps) == len(writes) - 1:
                itl_extra.append(gaps - np.diff(writes))
    figures = {"half_capacity_rate": round(rate, 1), "matched_requests": len(ttft_extra)}
    for name, values in (("client_added_ttft", ttft_extra),
                         ("client_added_itl", np.concatenate(itl_extra) if itl_extra else [0]),
                         ("ttft_request_leg", request_leg), ("ttft_first_token_leg", token_leg)):
        p50, p99 = np.percentile(np.asarray(values) / 1e6, [50, 99])
        figures[f"{name}_p50_ms"] = round(float(p50), 3)
        figures[f"{name}_p99_ms"] = round(float(p99), 3)
    return figures


def rate_accuracy(url: str) -> dict:
    """Achieved send rate (from actual send times) vs target, constant and Poisson."""
    figures = {}
    for pattern in ("constant", "poisson"):
        for rate in (500, 1000, 2000):
            stats, sink, _ = _run(_config(
                url, duration=3, concurrency=None, load={"pattern": pattern, "rate": rate},
                dataset={"input_tokens": 4, "output_tokens": 2, "ignore_eos": True}))
            columns, _ = measured_rows(sink.batches)
            sent = np.sort(columns["send_ns"][columns["send_ns"] > 0])
            intended = np.sort(columns["intended_ns"])
            # achieved over the same number of schedule slots the target implies
            achieved = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
            scheduled = (len(intended) - 1) / ((intended[-1] - intended[0]) / 1e9)
            lag = (columns["send_ns"] - columns["intended_ns"])[columns["send_ns"] > 0] / 1e6
            key = f"{pattern}_{rate}"
            figures[f"{key}_achieved_req_per_s"] = round(achieved, 1)
            figures[f"{key}_rate_error_pct"] = round(abs(achieved - scheduled) / scheduled * 100
                                                     if pattern == "poisson" else
                                                     abs(achieved - rate) / rate * 100, 3)
            p50, p99 = np.percentile(lag, [50, 99])
            figures[f"{key}_dispatch_lag_p50_ms"] = round(float(p50), 3)
            figures[f"{key}_dispatch_lag_p99_ms"] = round(float(p99), 3)
    return figures


def rss_growth(url: str, requests: int = 200_000) -> dict:
    """RSS sampled every 0.5 s through one long closed-loop trial (batches encoded and written
    to /dev/null); the slope over its last two thirds (after warm-up allocations), scaled by the
    request rate, extrapolated to 1 M requests. The run is long (200 k requests, about a minute)
    because the allocator's ups and downs of a few hundred KB, extrapolated from a short run,
    swamp the figure (40 k requests gave -16 to +28 MB per 1 M)."""
    process = psutil.Process()
    readings: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            readings.append((time.perf_counter(), process.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    sink = FileSink(os.devnull)
    started = time.perf_counter()
    sampler.start()
    try:
        stats, _, _ = _run(_config(url, duration=0, max_requests=requests, concurrency=32,
                                   dataset={"input_tokens": 4, "output_tokens": 4,
                                            "ignore_eos": True}), sink)
    finally:
        done.set()
        sampler.join()
        sink.close()
    elapsed = time.perf_counter() - started
    tail = np.array(readings[len(readings) // 3:])
    slope_mb_per_s = np.polyfit(tail[:, 0], tail[:, 1], 1)[0] if len(tail) > 2 else 0.0
    per_request = float(slope_mb_per_s) / (stats.requests / elapsed)
    return {"rss_run_requests": stats.requests,
            "rss_start_mb": round(readings[0][1], 1) if readings else None,
            "rss_end_mb": round(readings[-1][1], 1) if readings else None,
            "rss_growth_mb_per_1m_requests": round(per_request * 1e6, 2),
            "rss_growth_note": f"slope of RSS over the last 2/3 of a {stats.requests}-request "
                               "run, extrapolated linearly to 1M requests"}


def run() -> dict:
    figures = {}
    sim = Simulator("--ttft-ms", "1", "--itl-ms", "1")
    try:
        figures.update(cpu_per_request(sim.url))
        figures.update(sample_stream_cost(sim.url))
        figures["aiohttp_requests_per_cpu_s"] = aiohttp_requests_per_cpu_s(sim.url)
        figures.update(rate_accuracy(sim.url))
        figures.update(rss_growth(sim.url))
    finally:
        sim.stop()
    truth_sim = Simulator("--ttft-ms", "1", "--itl-ms", "1", truth=True)
    try:
        figures.update(client_added_latency(truth_sim.url, truth_sim,
                                            figures["closed_loop_64_req_per_s"] / 2))
    finally:
        truth_sim.stop()
    figures["cpu_count"] = os.cpu_count()
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    return {name: value.item() if isinstance(value, np.generic) else value
            for name, value in figures.items()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
